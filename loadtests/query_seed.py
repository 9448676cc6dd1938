"""Folds generated sessions the way the worker does and writes their rows straight into ClickHouse.

For the query tests and the query benchmark: what they read must be exactly what the sinks
would have written (same row functions, same fold, same prices), without pushing millions of
spans through Kafka. `write_sessions` uses the sinks' row builders and `insert_sync`; `BulkLoader`
encodes the same rows as replay does (JSONCompactColumns bodies, inserted from a file) for the
10-million-span load.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from schemas.span import Span
from spanstream.clickhouse import ClickHouseStore
from spanstream.insert_bodies import cost_values, encode_columns, span_values
from spanstream.replay_store import raw_insert
from streams.health import HealthRules
from streams.pricing import PriceBook
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS, cost_rows, health_row, session_row
from streams.session_step import apply_spans
from streams.sessions import SessionState
from streams.sink import SPAN_COLUMNS, span_row

COLUMNS = {"spans": SPAN_COLUMNS, "sessions": SESSION_COLUMNS, "session_costs": COST_COLUMNS,
           "session_health": HEALTH_COLUMNS}


def fold_session(spans: list[Span], book: PriceBook, rules: HealthRules) -> tuple[dict, dict | None]:
    """The session record and latest health change the worker publishes after folding `spans`
    delivered as one message."""
    step = apply_spans(SessionState(spans[0].project_id, spans[0].session_id), spans, book, rules)
    return step.record, step.health_change


def write_sessions(store: ClickHouseStore, sessions: Iterable[list[Span]], book: PriceBook,
                   rules: HealthRules = HealthRules()) -> list[dict]:
    """Writes the spans and the folded views of `sessions`; returns the session records."""
    rows: dict[str, list] = {table: [] for table in COLUMNS}
    records = []
    for spans in sessions:
        record, change = fold_session(spans, book, rules)
        records.append(record)
        rows["spans"].extend(span_row(span) for span in spans)
        rows["sessions"].append(session_row(record))
        rows["session_costs"].extend(cost_rows(record))
        if change is not None:
            rows["session_health"].append(health_row(change))
    for table, table_rows in rows.items():
        store.insert_sync(table, table_rows, COLUMNS[table])
    return records


class BulkLoader:
    """Buffers the rows of folded sessions and inserts them `flush_rows` spans at a time as
    JSONCompactColumns bodies (spanstream/insert_bodies.py), the way replay loads."""

    def __init__(self, store: ClickHouseStore, book: PriceBook, rules: HealthRules = HealthRules(),
                 flush_rows: int = 200_000) -> None:
        self._store, self._book, self._rules, self._flush_rows = store, book, rules, flush_rows
        self._rows: dict[str, list] = {table: [] for table in COLUMNS}
        self._dir = Path(tempfile.mkdtemp(prefix="query-seed-"))
        self.spans = self.sessions = 0

    def add(self, spans: list[Span]) -> None:
        record, change = fold_session(spans, self._book, self._rules)
        self._rows["spans"].extend(span_values(span) for span in spans)
        self._rows["sessions"].append(session_row(record))
        self._rows["session_costs"].extend(cost_values(record))
        if change is not None:
            self._rows["session_health"].append(health_row(change))
        self.spans += len(spans)
        self.sessions += 1
        if len(self._rows["spans"]) >= self._flush_rows:
            self.flush()

    def flush(self) -> None:
        for table, rows in self._rows.items():
            if not rows:
                continue
            body = encode_columns(COLUMNS[table], rows)
            if body is None:
                self._store.insert_sync(table, rows, COLUMNS[table])
            else:
                path = self._dir / f"{table}.json"
                path.write_bytes(body)
                raw_insert(self._store, table, COLUMNS[table], path)
                path.unlink()
            rows.clear()
