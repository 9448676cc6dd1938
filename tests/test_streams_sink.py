"""The sinks insert what the fold encoded; it must read back as the rows they used to build."""

from __future__ import annotations


import orjson

from spanstream.insert_bodies import encode_cost_rows, encode_span_rows
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS, cost_rows, health_row, session_row
from streams.sessions import from_us, session_record
from streams.sink import SPAN_COLUMNS, record_body_writer, rows_body_writer, span_body_writer, span_row
from tests.test_replay import _awkward_spans, _folded


def test_the_folds_encoded_rows_read_back_as_native_inserted_rows(store):
    spans = _awkward_spans()
    for copy in ("native", "rows"):
        store.command_sync(f"DROP TABLE IF EXISTS spans_{copy}")
        store.command_sync(f"CREATE TABLE spans_{copy} AS spans")
        store.command_sync(f"ALTER TABLE spans_{copy} REMOVE TTL")  # the 1970 span would be dropped
    store.insert_sync("spans_native", [span_row(span) for span in spans], SPAN_COLUMNS)
    # Small bodies: several per insert, as when one insert takes many frames' rows.
    bodies = encode_span_rows(spans, max_bytes=1)
    assert len(bodies) == len(spans)
    writer = span_body_writer(store)
    writer.table = "spans_rows"
    for body in bodies:
        writer.add(body)
    assert writer.flush() == len(spans)
    names = ", ".join(SPAN_COLUMNS)
    native, rows = (store.query_sync(f"SELECT {names} FROM spans_{copy} ORDER BY span_id") for copy in ("native", "rows"))
    assert rows == native and len(rows) == len(spans)
    assert {row["span_id"] for row in rows} == {span.span_id for span in spans}
    for copy in ("native", "rows"):
        store.command_sync(f"DROP TABLE spans_{copy}")


def test_session_records_and_health_changes_read_back_as_native_inserted_rows(store):
    """The sessions and health sinks insert the records as the fold wrote them to their topics."""
    record = session_record(_folded(_awkward_spans()), "tool_failure")
    change = {"project_id": record["project_id"], "session_id": record["session_id"], "version": 3,
              "health_tag": "tool_failure", "previous_tag": "", "at": from_us(1).isoformat(), "agents": ["writer"]}
    assert len(record["costs"]) > 1
    cases = [
        ("sessions", SESSION_COLUMNS, [session_row(record)], record_body_writer, orjson.dumps(record) + b"\n"),
        ("session_costs", COST_COLUMNS, cost_rows(record), rows_body_writer, encode_cost_rows(record)),
        ("session_health", HEALTH_COLUMNS, [health_row(change)], record_body_writer, orjson.dumps(change) + b"\n"),
    ]
    for table, columns, rows, writer_for, body in cases:
        for copy in ("native", "body"):
            store.command_sync(f"DROP TABLE IF EXISTS {table}_{copy}")
            store.command_sync(f"CREATE TABLE {table}_{copy} AS {table}")
        store.insert_sync(f"{table}_native", rows, columns)
        writer = writer_for(store, f"{table}_body", columns)
        writer.add(body)
        assert writer.flush() == len(rows), table
        native, inserted = (store.query_sync(f"SELECT {', '.join(columns)} FROM {table}_{copy} ORDER BY ALL")
                            for copy in ("native", "body"))
        assert inserted == native and len(native) == len(rows), table
        for copy in ("native", "body"):
            store.command_sync(f"DROP TABLE {table}_{copy}")
