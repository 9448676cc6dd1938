"""The only writer to ClickHouse: buffers rows and writes them in one insert, retrying until durable."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from schemas.span import Span
from spanstream.clickhouse import ClickHouseStore
from spanstream.insert_bodies import (
    INSERT_SETTINGS, RECORD_SETTINGS, RECORDS_FORMAT, ROWS_FORMAT, SETTINGS, SPAN_COLUMNS,
)
from spanstream.metrics import SINK_BATCH_ROWS, SINK_BATCH_SECONDS, SINK_RETRIES

log = logging.getLogger(__name__)

# One encoder for every span: json.dumps builds a new one per call when given arguments.
_attributes_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


def span_row(span: Span) -> list:
    """One spans-table row; absent optional values become ClickHouse's empty defaults."""
    return [
        span.project_id, span.session_id, span.trace_id, span.span_id, span.parent_span_id or "",
        span.span_type, span.name, span.agent_name or "", span.target_agent_name or "",
        span.server_name or "", span.tool_name or "", span.model_id or "", span.status,
        span.error or "", span.started_at, span.ended_at or span.started_at, span.latency_ms or 0.0,
        span.input_tokens, span.output_tokens, span.cache_read_tokens, span.cache_creation_tokens,
        span.thinking_tokens, span.finish_reason or "", span.input_args or "",
        span.output_result or "", span.llm_input or "", span.llm_output or "",
        _attributes_json(span.attributes) if span.attributes else "{}", span.schema_version,
        span.truncated_fields,
    ]


class _Writer:
    """`add` buffers, `flush` writes. Flush returns only once the batch is durable: while
    ClickHouse is unavailable it retries with capped back-off, and because its caller waits for
    it, consumption pauses instead of dropping rows or crashing. Every table written here
    replaces on its key, so a batch written twice (after a crash) leaves no duplicate."""

    def __init__(self, store: ClickHouseStore, table: str, columns: Sequence[str], max_backoff: float = 10.0) -> None:
        self._store = store
        self.table = table
        self._columns = tuple(columns)
        self._max_backoff = max_backoff
        self._rows: list = []
        self.written = 0
        self.retries = 0

    def add(self, row) -> None:
        self._rows.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def _written(self, rows: int, started: float) -> None:
        self.written += rows
        SINK_BATCH_ROWS.labels(self.table).observe(rows)
        SINK_BATCH_SECONDS.labels(self.table).observe(time.perf_counter() - started)

    def _failed(self, error: Exception, what: str, delay: float) -> float:
        """Counts and logs a failed insert; returns the delay before the next try."""
        self.retries += 1
        SINK_RETRIES.labels(self.table).inc()
        log.warning("insert of %s into %s failed (%s); retrying in %.1fs", what, self.table, error, delay)
        return min(delay * 2, self._max_backoff)


class ClickHouseWriter(_Writer):
    """Rows as lists, for a Faust agent: `await flush()`."""

    def __init__(self, store: ClickHouseStore, table: str, columns: Sequence[str], max_backoff: float = 10.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        super().__init__(store, table, columns, max_backoff)
        self._sleep = sleep

    async def flush(self) -> int:
        if not self._rows:
            return 0
        rows = self._rows
        started = time.perf_counter()
        try:
            delay = 0.1
            while True:
                try:
                    await self._store.insert(self.table, rows, self._columns)
                    break
                except Exception as error:  # noqa: BLE001 - any driver failure is retried
                    next_delay = self._failed(error, f"{len(rows)} rows", delay)
                    await self._sleep(delay)
                    delay = next_delay
        finally:
            self._rows = []
        self._written(len(rows), started)
        return len(rows)


class BodyWriter(_Writer):
    """Rows that arrive already encoded (spanstream/insert_bodies.py), for a sink on a thread of
    its own (streams/topic_sink.py): `add` takes a body, `flush` blocks until the bodies
    buffered are durable as one insert."""

    def __init__(self, store: ClickHouseStore, table: str, columns: Sequence[str], fmt: str,
                 settings: dict[str, str], max_backoff: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(store, table, columns, max_backoff)
        self._format = fmt
        self._settings = settings
        self._sleep = sleep

    def flush(self) -> int:
        if not self._rows:
            return 0
        body = b"".join(self._rows)
        started = time.perf_counter()
        try:
            delay = 0.1
            while True:
                try:
                    self._store.insert_body_sync(self.table, self._columns, body, self._format, self._settings)
                    break
                except Exception as error:  # noqa: BLE001 - any driver failure is retried
                    next_delay = self._failed(error, f"{len(body):,} bytes of rows", delay)
                    self._sleep(delay)
                    delay = next_delay
        finally:
            self._rows = []
        rows = body.count(b"\n")  # one row a line
        self._written(rows, started)
        return rows


def span_writer(store: ClickHouseStore) -> ClickHouseWriter:
    return ClickHouseWriter(store, "spans", SPAN_COLUMNS)


def span_body_writer(store: ClickHouseStore) -> BodyWriter:
    """For the fold's encoded rows (spanstream/insert_bodies.py encode_span_rows)."""
    return BodyWriter(store, "spans", SPAN_COLUMNS, ROWS_FORMAT, INSERT_SETTINGS)


def record_body_writer(store: ClickHouseStore, table: str, columns: Sequence[str]) -> BodyWriter:
    """For `sessions` records and `health` changes as they are on their topics, one a line:
    ClickHouse parses them itself, where clickhouse-connect built Native blocks in Python."""
    return BodyWriter(store, table, columns, RECORDS_FORMAT, RECORD_SETTINGS)


def rows_body_writer(store: ClickHouseStore, table: str, columns: Sequence[str]) -> BodyWriter:
    """For rows encoded as JSONCompactEachRow (spanstream/insert_bodies.py encode_cost_rows)."""
    return BodyWriter(store, table, columns, ROWS_FORMAT, SETTINGS)
