"""The sinks of the process that owns ClickHouse: the fold's span rows, `sessions` (into the
sessions and cost tables) and `health`, each a TopicSink (streams/topic_sink.py)."""

from __future__ import annotations

import orjson

from spanstream.clickhouse import ClickHouseStore
from spanstream.insert_bodies import encode_cost_rows
from spanstream.settings import Settings
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS
from streams.sink import record_body_writer, rows_body_writer, span_body_writer
from streams.topic_sink import TopicSink
from streams.topics import rows_topic_name

# Each `spans.rows` message is the fold's rows of up to a frame (1 MiB) of spans: at most this
# many are held at once, and as many as spans_sink_batch_seconds brings make one insert. Fewer
# would make many small parts when spans trickle in, which slows every query over them.
FRAMES_PER_INSERT = 64


def view_sinks(settings: Settings, store: ClickHouseStore) -> list[TopicSink]:
    spans_out = span_body_writer(store)
    sessions_out = record_body_writer(store, "sessions", SESSION_COLUMNS)
    costs_out = rows_body_writer(store, "session_costs", COST_COLUMNS)
    health_out = record_body_writer(store, "session_health", HEALTH_COLUMNS)

    def session_changed(record: bytes) -> None:
        # Records go in as the fold wrote them; only their cost cells need Python.
        sessions_out.add(record + b"\n")
        costs_out.add(encode_cost_rows(orjson.loads(record)))

    def health_changed(change: bytes) -> None:
        health_out.add(change + b"\n")

    batch, within = settings.sink_batch_size, settings.sink_batch_seconds
    return [
        TopicSink(settings, "spans", rows_topic_name(settings.spans_topic), spans_out.add, [spans_out],
                  FRAMES_PER_INSERT, settings.spans_sink_batch_seconds, fetch_wait_ms=200),
        # Cost cells first: a session read from `sessions` then finds the cells of its version.
        TopicSink(settings, "sessions", settings.sessions_topic, session_changed, [costs_out, sessions_out],
                  batch, within),
        TopicSink(settings, "health", settings.health_topic, health_changed, [health_out], batch, within),
    ]
