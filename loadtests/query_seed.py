"""Folds generated sessions the way the worker does and writes their rows straight into ClickHouse.

For the query tests and the query benchmark: what they read must be exactly what the sinks
would have written (same row functions, same fold, same prices), without pushing millions of
spans through Kafka. `write_sessions` uses the sinks' row builders and `insert_sync`; `encode_bodies`
and `insert_bodies` load the same rows as replay does (JSONCompactColumns bodies, inserted from
a file), for the 10-million-span benchmark.
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


def folded_rows(sessions: Iterable[list[Span]], book: PriceBook, rules: HealthRules = HealthRules(),
                bulk: bool = False) -> tuple[dict[str, list], list[dict]]:
    """The rows of every table the sinks write for `sessions`, and the session records. `bulk`
    builds the rows replay builds for JSONCompactColumns bodies (same values, faster)."""
    rows: dict[str, list] = {table: [] for table in COLUMNS}
    records = []
    span_of, costs_of = (span_values, cost_values) if bulk else (span_row, cost_rows)
    for spans in sessions:
        record, change = fold_session(spans, book, rules)
        records.append(record)
        rows["spans"].extend(span_of(span) for span in spans)
        rows["sessions"].append(session_row(record))
        rows["session_costs"].extend(costs_of(record))
        if change is not None:
            rows["session_health"].append(health_row(change))
    return rows, records


def write_sessions(store: ClickHouseStore, sessions: Iterable[list[Span]], book: PriceBook,
                   rules: HealthRules = HealthRules()) -> list[dict]:
    """Writes the spans and the folded views of `sessions` as the sinks would; returns the session records."""
    rows, records = folded_rows(sessions, book, rules)
    for table, table_rows in rows.items():
        store.insert_sync(table, table_rows, COLUMNS[table])
    return records


def encode_bodies(rows: dict[str, list], directory: Path) -> list[tuple[str, Path | list]]:
    """Each table's rows as a JSONCompactColumns body file in `directory` (or the rows themselves
    when JSON cannot carry them exactly), for `insert_bodies`."""
    bodies: list[tuple[str, Path | list]] = []
    for table, table_rows in rows.items():
        if not table_rows:
            continue
        body = encode_columns(COLUMNS[table], table_rows)
        if body is None:
            bodies.append((table, table_rows))
            continue
        path = Path(tempfile.mkstemp(prefix=f"{table}-", suffix=".json", dir=directory)[1])
        path.write_bytes(body)
        bodies.append((table, path))
    return bodies


def insert_bodies(store: ClickHouseStore, bodies: list[tuple[str, Path | list]]) -> None:
    for table, body in bodies:
        if isinstance(body, Path):
            raw_insert(store, table, COLUMNS[table], body)
            body.unlink()
        else:
            store.insert_sync(table, body, COLUMNS[table])
