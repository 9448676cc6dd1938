"""Faust agents: thin loops that decode, fold with pure functions, write tables and hand off to sinks."""

from __future__ import annotations

import json
import logging
from typing import Protocol

import faust

from schemas.span import Unreadable, decode_message
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings
from streams.derived import DerivedPublisher
from streams.health import HealthRules
from streams.pricing import PriceBook
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS, cost_rows, health_row, session_row
from streams.session_step import apply_spans, by_session
from streams.sessions import SessionState, dump_state, load_state
from streams.sink import ClickHouseWriter, span_row, span_writer
from streams.topics import SESSIONS_TABLE, declare_topics

log = logging.getLogger(__name__)


class PriceSource(Protocol):
    """Anything with a current `book` (streams.pricing_source.PriceBookRefresher in the worker)."""

    @property
    def book(self) -> PriceBook: ...


def register_fold_agents(app: faust.App, settings: Settings, prices: PriceSource, rules: HealthRules) -> None:
    """The stateful side: sessions folded from spans. Needs no analytics store, so it can run in
    processes of its own (one core each) beside the process that owns the store."""
    topics = declare_topics(app, settings)
    derived = DerivedPublisher(settings)
    derived.attach(app)
    # bytes keys and values: Faust stores them raw; the state is our own JSON (streams.sessions).
    sessions = app.Table(SESSIONS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.spans_partitions)

    @app.agent(topics.spans, name="fold-sessions")
    async def fold_sessions(stream: faust.StreamT) -> None:
        # One event at a time, not take(): a table write goes to the changelog partition of the
        # current event, which must be the partition the session's spans live in.
        async for event in stream.events():
            spans, unreadable = decode_message(event.value)
            for item in unreadable:
                await _dead_letter(topics.spans_dead_letters, event.message, item)
            book = prices.book
            for key, group in by_session(spans).items():
                stored = sessions.get(key)
                state = load_state(json.loads(stored)) if stored else SessionState(group[0].project_id, group[0].session_id)
                step = apply_spans(state, group, book, rules)
                if step.changed:
                    sessions[key] = json.dumps(dump_state(state), separators=(",", ":")).encode()
                # Durable before this event's offset is committed (streams/derived.py). A
                # redelivery re-sends the same versions, which is harmless.
                derived.publish(settings.sessions_topic, key, json.dumps(step.record, separators=(",", ":")).encode())
                if step.health_change is not None and (not step.changed or step.health_change["version"] == state.version):
                    derived.publish(settings.health_topic, key, json.dumps(step.health_change).encode())



def register_sink_agents(app: faust.App, settings: Settings, store: ClickHouseStore) -> None:
    """The writers: spans and the derived topics into ClickHouse, each batch acked once durable."""
    topics = declare_topics(app, settings)
    spans_out = span_writer(store)
    sessions_out = ClickHouseWriter(store, "sessions", SESSION_COLUMNS)
    costs_out = ClickHouseWriter(store, "session_costs", COST_COLUMNS)
    health_out = ClickHouseWriter(store, "session_health", HEALTH_COLUMNS)
    batch, within = settings.sink_batch_size, settings.sink_batch_seconds

    @app.agent(topics.spans, name="spans-to-clickhouse")
    async def spans_to_clickhouse(stream: faust.StreamT) -> None:
        # take_events acks a batch only after this body returns, i.e. after the insert is
        # durable: a crash before that redelivers the batch, and the replacing table dedups it.
        async for events in stream.take_events(batch, within=within):
            for event in events:
                spans, _ = decode_message(event.value)  # the fold worker dead-letters the rest
                for span in spans:
                    spans_out.add(span_row(span))
            await spans_out.flush()

    @app.agent(topics.sessions, name="sessions-to-clickhouse")
    async def sessions_to_clickhouse(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch, within=within):
            for event in events:
                record = json.loads(event.value)
                sessions_out.add(session_row(record))
                for row in cost_rows(record):
                    costs_out.add(row)
            await sessions_out.flush()
            await costs_out.flush()

    @app.agent(topics.health, name="health-to-clickhouse")
    async def health_to_clickhouse(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch, within=within):
            for event in events:
                health_out.add(health_row(json.loads(event.value)))
            await health_out.flush()


async def _dead_letter(topic: faust.TopicT, message, item: Unreadable) -> None:
    headers = {
        "error": item.reason.encode()[:4096],
        "source_topic": message.topic.encode(),
        "source_partition": str(message.partition).encode(),
        "source_offset": str(message.offset).encode(),
    }
    if item.index is not None:
        headers["source_index"] = str(item.index).encode()
    # force: publish now and wait for the broker's ack, before the batch's offsets are committed.
    delivery = await topic.send(force=True, key=message.key, value=item.raw, headers=headers)
    await delivery
    log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, item.reason)
