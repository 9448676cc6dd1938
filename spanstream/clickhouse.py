"""The ClickHouse storage adapter shared by the stream processor and the query layer.

It lives in `spanstream/` because both `streams/` (the sink writes) and `api/` (queries read)
need it and neither may import the other. One `ClickHouseStore` per process: embedded chdb
allows a single process per data directory, and a single open engine per process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import threading
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, ProgrammingError

from spanstream.settings import Settings


class StoreUnavailable(RuntimeError):
    """ClickHouse cannot be opened or reached; the message says what to do."""


class StoreHeldElsewhere(StoreUnavailable):
    """The embedded store is open in another process (`pid`), which alone may use it."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class ClickHouseStore:
    """One client, serialised: chdb's engine and clickhouse-connect's HTTP session are not
    safe for concurrent queries from several threads, and blocking calls run off the loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = None
        self._lock = threading.Lock()

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
        except (ProgrammingError, ClickHouseError, OSError) as error:
            raise StoreUnavailable(self._explain(error)) from error
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
        if self._client is not None:
            self._client.close()
            self._client = None

    def _require(self):
        if self._client is None:
            raise StoreUnavailable("the ClickHouse store is not open")
        return self._client

    # Synchronous calls: for the migration runner and other start-up code.
    def command_sync(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._require().command(sql, parameters=parameters)

    def query_sync(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """`settings` are ClickHouse query settings for this query alone (caps such as
        max_execution_time, max_memory_usage, readonly)."""
        with self._lock:
            result = self._require().query(sql, parameters=parameters, settings=settings)
        return [dict(zip(result.column_names, row)) for row in result.result_rows]

    def query_table_sync(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> tuple[list[str], list[str], list[Sequence[Any]]]:
        """Column names, their ClickHouse types and the rows, in order: for results whose
        columns are not known in advance (duplicate names would collapse in a dict)."""
        with self._lock:
            result = self._require().query(sql, parameters=parameters, settings=settings)
        return list(result.column_names), [t.name for t in result.column_types], list(result.result_rows)

    def insert_sync(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        if not rows:
            return
        with self._lock:
            self._require().insert(table, rows, column_names=list(column_names))

    def insert_body_sync(self, table: str, column_names: Sequence[str], body: bytes, fmt: str,
                         settings: dict[str, Any] | None = None) -> None:
        """Rows already encoded in a ClickHouse input format: ClickHouse parses them in C++."""
        if not body:
            return
        with self._lock:
            self._require().raw_insert(table, list(column_names), body, settings=settings, fmt=fmt)

    # Asynchronous wrappers: the event loop never blocks on ClickHouse.
    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.command_sync, sql, parameters)

    async def query(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query_sync, sql, parameters, settings)

    async def query_table(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> tuple[list[str], list[str], list[Sequence[Any]]]:
        return await asyncio.to_thread(self.query_table_sync, sql, parameters, settings)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        await asyncio.to_thread(self.insert_sync, table, rows, column_names)

    async def insert_body(self, table: str, column_names: Sequence[str], body: bytes, fmt: str,
                          settings: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(self.insert_body_sync, table, column_names, body, fmt, settings)
