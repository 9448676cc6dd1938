"""The ClickHouse storage adapter shared by the stream processor and the query layer.

It lives in `spanstream/` because both `streams/` (the sink writes) and `api/` (queries read)
need it and neither may import the other. One `ClickHouseStore` per process: embedded chdb
allows a single process per data directory, and a single open engine per process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, ProgrammingError

from spanstream.result_cache import ResultCache
from spanstream.settings import Settings

# Reads that may run at once, each on its own connection. chdb runs a query without the GIL,
# so two use both cores of a small machine; a few more keep a slow read (a 30-day list) from
# holding up the point lookups queued behind it.
READERS = 4
# One per sink thread (streams/view_sinks.py): spans, sessions with their costs, health.
INSERTERS = 3
_TO_TARGET = re.compile(r"\bTO\s+`?(?:[\w]+`?\.`?)?([\w]+)`?", re.IGNORECASE)


class StoreUnavailable(RuntimeError):
    """ClickHouse cannot be opened or reached; the message says what to do."""


class StoreHeldElsewhere(StoreUnavailable):
    """The embedded store is open in another process (`pid`), which alone may use it."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class ClickHouseStore:
    """DDL goes through one client, one statement at a time; inserts through a pool of
    `INSERTERS` clients, so that a sessions insert does not wait behind a spans insert (each
    sink has a thread); reads through a pool of `READERS` clients, beside each other and beside
    the inserts (a connection serves one call at a time, the engine many). Blocking calls run
    off the loop.

    Embedded, this store is the only way into the data, so it knows every write: `query(...,
    cached=True)` reuses an answer until a table the query reads is written (result_cache.py)."""

    def __init__(self, settings: Settings, readers: int = READERS) -> None:
        self._settings = settings
        self._client = None
        self._lock = threading.Lock()
        self._reader_count = readers
        self._readers: queue.SimpleQueue = queue.SimpleQueue()
        self._read_pool: ThreadPoolExecutor | None = None
        self._cache = ResultCache() if settings.clickhouse_embedded and settings.result_cache else None
        self._feeds: dict[str, frozenset[str]] = {}  # table -> tables its materialized views write
        self._flights: dict[tuple, tuple[tuple[int, ...], Future]] = {}
        self._flights_lock = threading.Lock()
        self._inserters: queue.SimpleQueue = queue.SimpleQueue()

    @property
    def embedded(self) -> bool:
        return self._settings.clickhouse_embedded

    def open(self) -> ClickHouseStore:
        dsn = self._settings.clickhouse_dsn
        database = self._settings.clickhouse_database
        if self.embedded:
            self._settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._refuse_if_held_elsewhere(Path(dsn.removeprefix("chdb://")))
        try:
            bootstrap = clickhouse_connect.get_client(dsn=dsn)
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            self._client = clickhouse_connect.get_client(dsn=dsn, database=database)
            for _ in range(self._reader_count):
                self._readers.put(clickhouse_connect.get_client(dsn=dsn, database=database))
            for _ in range(INSERTERS):
                self._inserters.put(clickhouse_connect.get_client(dsn=dsn, database=database))
        except (ProgrammingError, ClickHouseError, OSError) as error:
            self.close()
            raise StoreUnavailable(self._explain(error)) from error
        self._read_pool = ThreadPoolExecutor(self._reader_count, thread_name_prefix="clickhouse-read")
        self._learn_feeds()
        return self

    def _refuse_if_held_elsewhere(self, path: Path) -> None:
        # chdb reports a held directory only as "Error initializing EmbeddedServer"; the engine
        # flocks `status` (which names its pid) for as long as it is open, so ask the lock.
        status = path / "status"
        try:
            fd = os.open(status, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            holder = re.search(r"PID:\s*(\d+)", Path(status).read_text(errors="replace"))
            if holder and int(holder[1]) == os.getpid():
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                pid = f" (pid {holder[1]})" if holder else ""
                raise StoreHeldElsewhere(
                    f"the embedded ClickHouse store {path} is open in another process{pid}; only one "
                    "process may open a chdb directory. Stop that process (or talk to it through its "
                    "API), or run a ClickHouse server and set SPANSTREAM_CLICKHOUSE_URL.",
                    int(holder[1]) if holder else None,
                ) from None
        finally:
            os.close(fd)

    def _explain(self, error: Exception) -> str:
        text = str(error)
        if self.embedded:
            return f"cannot open the embedded ClickHouse store {self._settings.clickhouse_dsn}: {text}"
        return (
            f"cannot reach ClickHouse at {self._settings.clickhouse_url}: {text}. "
            "Start the server or fix SPANSTREAM_CLICKHOUSE_URL."
        )

    def close(self) -> None:
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
            self._read_pool = None
        for pool in (self._readers, self._inserters):
            while True:
                try:
                    pool.get_nowait().close()
                except queue.Empty:
                    break
        if self._client is not None:
            self._client.close()
            self._client = None

    def _require(self):
        if self._client is None:
            raise StoreUnavailable("the ClickHouse store is not open")
        return self._client

    @contextmanager
    def _borrowed(self, pool: queue.SimpleQueue):
        """A client of `pool` (the readers or the inserters) for one call; waits only when more
        threads call at once than the pool has clients."""
        self._require()
        client = pool.get()
        try:
            yield client
        finally:
            pool.put(client)

    def _learn_feeds(self) -> None:
        """Which tables a write to each table also changes, through materialized views (a
        write to `spans` changes `mcp_server_stats`); a view whose target cannot be told
        counts as changing everything."""
        try:
            with self._lock:
                tables = self._require().query(
                    """SELECT name, dependencies_table, create_table_query FROM system.tables
                       WHERE database = currentDatabase()""").result_rows
        except ClickHouseError:
            self._feeds = {"*": frozenset("*")}  # unknown: every write counts as changing everything
            return
        views = {name: create for name, _, create in tables}
        feeds: dict[str, frozenset[str]] = {}
        for name, dependents, _ in tables:
            targets = set()
            for view in dependents:
                found = _TO_TARGET.search(views.get(view, ""))
                targets.add(found[1] if found else "*")
            feeds[name] = frozenset(targets)
        self._feeds = feeds

    def _wrote(self, table: str) -> None:
        if self._cache is None:
            return
        changed, todo = set(), [table, *self._feeds.get("*", ())]
        while todo:
            name = todo.pop()
            if name == "*":
                self._cache.changed_everything()
                return
            if name not in changed:
                changed.add(name)
                todo.extend(self._feeds.get(name, ()))
        self._cache.wrote(changed)

    # Synchronous calls: for the migration runner and other start-up code.
    def command_sync(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        try:
            with self._lock:
                return self._require().command(sql, parameters=parameters)
        finally:
            # DDL, mutations, INSERT ... SELECT: a command may change any table, or the views.
            if self._cache is not None:
                self._cache.changed_everything()
                if self._client is not None and not sql.lstrip().upper().startswith(("SELECT", "SHOW", "EXISTS")):
                    self._learn_feeds()

    def query_sync(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """`settings` are ClickHouse query settings for this query alone (caps such as
        max_execution_time, max_memory_usage, readonly)."""
        names, rows = self._select(sql, parameters, settings)
        return _dicts(names, rows)

    def _select(self, sql: str, parameters: dict[str, Any] | None, settings: dict[str, Any] | None):
        with self._borrowed(self._readers) as client:
            result = client.query(sql, parameters=parameters, settings=settings)
        return result.column_names, result.result_rows

    def query_table_sync(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> tuple[list[str], list[str], list[Sequence[Any]]]:
        """Column names, their ClickHouse types and the rows, in order: for results whose
        columns are not known in advance (duplicate names would collapse in a dict)."""
        with self._borrowed(self._readers) as client:
            result = client.query(sql, parameters=parameters, settings=settings)
        return list(result.column_names), [t.name for t in result.column_types], list(result.result_rows)

    def insert_sync(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        if not rows:
            return
        try:
            with self._borrowed(self._inserters) as client:
                client.insert(table, rows, column_names=list(column_names))
        finally:
            self._wrote(table)

    def insert_body_sync(self, table: str, column_names: Sequence[str], body: bytes, fmt: str,
                         settings: dict[str, Any] | None = None) -> None:
        """Rows already encoded in a ClickHouse input format: ClickHouse parses them in C++."""
        if not body:
            return
        try:
            with self._borrowed(self._inserters) as client:
                client.raw_insert(table, list(column_names), body, settings=settings, fmt=fmt)
        finally:
            self._wrote(table)

    # Asynchronous wrappers: the event loop never blocks on ClickHouse.
    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.command_sync, sql, parameters)

    async def query(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
        *, cached: bool = False,
    ) -> list[dict[str, Any]]:
        """`cached`: the caller accepts an answer computed earlier in the same second, given no
        write since to a table the query reads; only queries whose answer is a function of their
        text, parameters and the tables are ever reused (result_cache.tables_read)."""
        key = self._cache.key(sql, parameters, settings) if cached and self._cache is not None else None
        if key is None:
            return _dicts(*await self._off_loop(self._select, sql, parameters, settings))
        answer = self._cache.get(key)
        if answer is None:
            answer = await asyncio.wrap_future(self._flight(key, sql, parameters, settings))
        return _dicts(*answer)

    def _flight(self, key: tuple, sql: str, parameters, settings) -> Future:
        """The one query under way for `key`, started if there is none: a hundred clients asking
        for the same list in the same second wait for one query, not a hundred. A flight that
        began before the latest write to its tables is not joined (its answer may lack it)."""
        if self._read_pool is None:
            raise StoreUnavailable("the ClickHouse store is not open")
        stamp = self._cache.stamp(key)
        with self._flights_lock:
            flight = self._flights.get(key)
            if flight is not None and flight[0] == stamp:
                return flight[1]
            future = self._read_pool.submit(self._select, sql, parameters, settings)
            self._flights[key] = (stamp, future)

        def landed(done: Future) -> None:
            with self._flights_lock:
                if self._flights.get(key, (None, None))[1] is done:
                    del self._flights[key]
            if not done.cancelled() and done.exception() is None:
                self._cache.put(key, stamp, done.result(), len(done.result()[1]))

        future.add_done_callback(landed)
        return future

    async def query_table(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> tuple[list[str], list[str], list[Sequence[Any]]]:
        return await self._off_loop(self.query_table_sync, sql, parameters, settings)

    async def _off_loop(self, call, *args):
        if self._read_pool is None:
            raise StoreUnavailable("the ClickHouse store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, call, *args)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        await asyncio.to_thread(self.insert_sync, table, rows, column_names)

    async def insert_body(self, table: str, column_names: Sequence[str], body: bytes, fmt: str,
                          settings: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(self.insert_body_sync, table, column_names, body, fmt, settings)


def _dicts(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Fresh dicts (and fresh lists for array values) per caller: callers reshape rows in place,
    and a cached answer must not change under the next one."""
    return [{name: list(value) if isinstance(value, list) else value for name, value in zip(names, row)}
            for row in rows]
