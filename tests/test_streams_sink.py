"""The spans sink inserts the rows the fold encoded; they must read back as the rows it used to build."""

from __future__ import annotations

import asyncio

from spanstream.insert_bodies import encode_span_rows
from streams.sink import SPAN_COLUMNS, span_body_writer, span_row
from tests.test_replay import _awkward_spans


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
    assert asyncio.run(writer.flush()) == len(spans)
    names = ", ".join(SPAN_COLUMNS)
    native, rows = (store.query_sync(f"SELECT {names} FROM spans_{copy} ORDER BY span_id") for copy in ("native", "rows"))
    assert rows == native and len(rows) == len(spans)
    assert {row["span_id"] for row in rows} == {span.span_id for span in spans}
    for copy in ("native", "rows"):
        store.command_sync(f"DROP TABLE spans_{copy}")
