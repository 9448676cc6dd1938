"""Answers of read queries, reused while nothing they read can have changed.

The embedded store is written only through its owner process's `ClickHouseStore`, so the store
knows every write: an answer is kept with the write generation of each table its query reads,
and is reused only while those generations are unchanged and within the same wall-clock second
it was computed in (background merges and TTL deletes change no FINAL answer, but the second
bounds what they could). Queries that name no table, read system tables, call table functions
or ask for the time or randomness themselves are never cached: their answer is not a function
of their text, parameters and the tables' contents. Dashboards polling the same list, and many
clients asking for the same page in the same second, are what this saves.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_TABLE = re.compile(r"\b(?:FROM|JOIN)\s+(`?[A-Za-z_][\w.`]*`?)(\s*\()?", re.IGNORECASE)
# What makes an answer depend on more than the text, the parameters and the data.
_UNSTABLE = re.compile(
    r"\b(?:now|now64|nowInBlock|today|yesterday|rand\w*|generateUUID\w*|randomString\w*|"
    r"currentUser|hostName|uptime|timezone|serverTimezone|queryID|initialQueryID)\s*\(",
    re.IGNORECASE,
)
_COMMENT_OR_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|--[^\n]*|/\*.*?\*/", re.DOTALL)
MAX_ENTRIES = 512
MAX_ROWS = 20_000  # a larger answer is rare, costly to keep and not what dashboards poll


@functools.lru_cache(maxsize=1024)  # the endpoints send a few dozen texts, over and over
def tables_read(sql: str) -> frozenset[str] | None:
    """The tables a query reads (by the names after FROM and JOIN), or None if its answer may
    change without a write to them. Comments are not read; a word in a string literal may
    only make the answer look less stable than it is."""
    sql = _COMMENT_OR_STRING.sub(lambda m: m[0] if m[0].startswith("'") else " ", sql)
    if _UNSTABLE.search(sql):
        return None
    names = set()
    for match in _TABLE.finditer(sql):
        name, call = match[1].replace("`", ""), match[2]
        if call is not None or "." in name or name.lower() == "system":
            return None  # a table function, another database or a system table
        names.add(name)
    return frozenset(names) or None


class ResultCache:
    """Thread-safe: the event loop looks answers up, reader threads and sinks store and invalidate."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}
        self._epoch = 0  # bumped by anything that may change any table (DDL, mutations)
        self._entries: OrderedDict[tuple, tuple[tuple[int, ...], Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def key(self, sql: str, parameters: dict[str, Any] | None, settings: dict[str, Any] | None) -> tuple | None:
        tables = tables_read(sql)
        if tables is None:
            return None
        return (int(self._clock()), sql, _frozen(parameters), _frozen(settings), tuple(sorted(tables)))

    def stamp(self, key: tuple) -> tuple[int, ...]:
        """The generations the answer to `key` depends on, taken before the query runs: a write
        that completes while it runs makes the stored answer unusable."""
        with self._lock:
            return (self._epoch, *(self._generations.get(table, 0) for table in key[-1]))

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == (self._epoch, *(self._generations.get(t, 0) for t in key[-1])):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None

    def put(self, key: tuple, stamp: tuple[int, ...], answer: Any, rows: int) -> None:
        if rows > MAX_ROWS:
            return
        with self._lock:
            self._entries[key] = (stamp, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def wrote(self, tables: Iterable[str]) -> None:
        """Called after a write to `tables` finished (or failed: it may have written some rows)."""
        with self._lock:
            for table in tables:
                self._generations[table] = self._generations.get(table, 0) + 1

    def changed_everything(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()


def _frozen(values: dict[str, Any] | None) -> tuple:
    if not values:
        return ()
    return tuple(sorted((name, _hashable(value)) for name, value in values.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple, Sequence)) and not isinstance(value, (str, bytes)):
        return (type(value).__name__, tuple(_hashable(item) for item in value))
    if isinstance(value, dict):
        return ("dict", _frozen(value))
    return (type(value).__name__, value)
