"""Faust agents: thin loops that decode, fold with pure functions, write tables and hand off to sinks."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

import faust
import orjson

from schemas.span import Unreadable
from spanstream.clickhouse import ClickHouseStore
from spanstream.insert_bodies import encode_cost_rows
from spanstream.metrics import SPANS_DEAD_LETTERED, SPANS_FOLDED
from spanstream.settings import Settings
from streams.changelog import PublishedChangelogTable
from streams.derived import DerivedPublisher
from streams.health import HealthRules
from streams.heap import settle_heap
from streams.pricing import PriceBook
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS
from streams.frame_step import fold_frame
from streams.sessions import SessionState, dump_state, load_state, session_record
from streams.span_batches import BadBatch, SourceMessage, unpack
from streams.sink import record_body_writer, rows_body_writer, span_body_writer
from streams.topics import SESSIONS_TABLE, declare_topics, rows_topic_name

log = logging.getLogger(__name__)
FRAMES_PER_INSERT = 64
# About one body per frame: frames hold at most 1 MiB of spans, and their rows are smaller.
ROWS_BODY_BYTES = 1024 * 1024


def _redelivered_on_error(body: Callable[[faust.StreamT], Awaitable[None]]):
    """Faust acks an event whose agent body raised (its stream iterator acks in `finally`), and
    then commits past it: its spans would be skipped for good. Exiting at once instead leaves
    the offset uncommitted, so the restarted process (restarted by `spanstream serve`, or the
    orchestrator) processes it again, which the fold and the sinks make harmless."""

    @functools.wraps(body)
    async def guarded(stream: faust.StreamT) -> None:
        try:
            await body(stream)
        except Exception:
            log.critical("%s failed; exiting so that its uncommitted events are delivered again", body.__name__,
                         exc_info=True)
            logging.shutdown()
            os._exit(70)

    return guarded


class PriceSource(Protocol):
    """Anything with a current `book` (streams.pricing_source.PriceBookRefresher in the worker)."""

    @property
    def book(self) -> PriceBook: ...


def register_fold_agents(app: faust.App, settings: Settings, prices: PriceSource, rules: HealthRules) -> None:
    """The stateful side: sessions folded from the batcher's frames of spans. Needs no analytics
    store, so it can run in processes of its own (one core each) beside the process that owns it."""
    topics = declare_topics(app, settings)
    derived = DerivedPublisher(settings)
    derived.attach(app)
    # Raw bytes keys and values: the state is our own JSON (streams.sessions).
    sessions = app.tables.add(PublishedChangelogTable(
        app, name=SESSIONS_TABLE, beacon=app.tables.beacon, partitions=settings.spans_partitions,
        key_type=bytes, value_type=bytes,  # bytes: the raw serializer, our JSON as is
    ))
    sessions.use_publisher(derived)
    rows_topic = rows_topic_name(settings.spans_topic)

    def load(key: bytes) -> SessionState | None:
        stored = sessions.get(key)
        return load_state(orjson.loads(stored)) if stored else None

    @app.agent(topics.span_batches, name="fold-sessions")
    @_redelivered_on_error
    async def fold_sessions(stream: faust.StreamT) -> None:
        settle_heap()
        # One frame (many `spans` messages of one partition) per event: a table write goes to
        # the changelog partition of the current event, which is the partition of its spans.
        async for event in stream.events():
            items = _frame_items(event)
            # Each message decoded, its spans-table rows encoded and its spans folded before the
            # next (streams/frame_step.py): a third less CPU than three passes over the frame.
            folded = fold_frame([item.value for item in items], load, prices.book, rules, ROWS_BODY_BYTES)
            for index, bad in folded.unreadable:
                await _dead_letter(topics.spans_dead_letters, settings.spans_topic, event.message.partition,
                                   items[index], bad)
            # The rows are encoded here because every span was just validated: the process that
            # owns ClickHouse then only inserts them. Same partition as the frame, durable before
            # its offset is committed, like the records below.
            for body in folded.span_rows:
                derived.publish(rows_topic, None, body, partition=event.message.partition)
            SPANS_FOLDED.inc(folded.spans)
            batch = folded.batch
            for key, state in batch.states.items():
                if key in batch.changed:
                    sessions[key] = orjson.dumps(dump_state(state))
                # Durable before this event's offset is committed (streams/derived.py). A
                # redelivery re-sends the same versions, which is harmless.
                derived.publish(settings.sessions_topic, key, orjson.dumps(session_record(state, state.health_tag)))
            for key, change in batch.health_changes:
                derived.publish(settings.health_topic, key, orjson.dumps(change))


def register_sink_agents(app: faust.App, settings: Settings, store: ClickHouseStore) -> None:
    """The writers: spans and the derived topics into ClickHouse, each batch acked once durable."""
    topics = declare_topics(app, settings)
    spans_out = span_body_writer(store)
    sessions_out = record_body_writer(store, "sessions", SESSION_COLUMNS)
    costs_out = rows_body_writer(store, "session_costs", COST_COLUMNS)
    health_out = record_body_writer(store, "session_health", HEALTH_COLUMNS)
    batch, within = settings.sink_batch_size, settings.sink_batch_seconds

    @app.agent(topics.span_rows, name="spans-to-clickhouse")
    @_redelivered_on_error
    async def spans_to_clickhouse(stream: faust.StreamT) -> None:
        settle_heap()
        # take_events acks a batch only after this body returns, i.e. after the insert is
        # durable: a crash before that redelivers the batch, and the replacing table dedups it.
        # Each event is the fold's rows of up to a frame of spans: at most FRAMES_PER_INSERT of
        # them are held at once, and as many as spans_sink_batch_seconds brings make one insert. Fewer would make
        # many small parts when spans trickle in, which slows every query over them.
        async for events in stream.take_events(FRAMES_PER_INSERT, within=settings.spans_sink_batch_seconds):
            for event in events:
                spans_out.add(event.value)
            await spans_out.flush()

    @app.agent(topics.sessions, name="sessions-to-clickhouse")
    @_redelivered_on_error
    async def sessions_to_clickhouse(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch, within=within):
            # Records go in as the fold wrote them; only their cost cells need Python.
            for event in events:
                sessions_out.add(event.value + b"\n")
                costs_out.add(encode_cost_rows(orjson.loads(event.value)))
            await sessions_out.flush()
            await costs_out.flush()

    @app.agent(topics.health, name="health-to-clickhouse")
    @_redelivered_on_error
    async def health_to_clickhouse(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch, within=within):
            for event in events:
                health_out.add(event.value + b"\n")
            await health_out.flush()


def _frame_items(event) -> list[SourceMessage]:
    try:
        return unpack(event.value)
    except BadBatch as error:
        # Only the batcher writes this topic; a frame it did not write is a bug worth a crash
        # (the offset stays uncommitted) rather than spans silently skipped.
        raise RuntimeError(f"{event.message.topic}[{event.message.partition}]@{event.message.offset}: {error}") from error


async def _dead_letter(topic: faust.TopicT, source_topic: str, partition: int, item: SourceMessage, bad: Unreadable) -> None:
    headers = {
        "error": bad.reason.encode()[:4096],
        "source_topic": source_topic.encode(),
        "source_partition": str(partition).encode(),
        "source_offset": str(item.offset).encode(),
    }
    if bad.index is not None:
        headers["source_index"] = str(bad.index).encode()
    # force: publish now and wait for the broker's ack, before the batch's offsets are committed.
    delivery = await topic.send(force=True, key=item.key or None, value=bad.raw, headers=headers)
    await delivery
    SPANS_DEAD_LETTERED.inc()
    log.warning("dead-lettered %s[%d]@%d: %s", source_topic, partition, item.offset, bad.reason)
