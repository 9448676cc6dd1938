"""The fold's Faust agent: a thin loop that decodes, folds with pure functions, writes the table
and publishes what changed. The sinks that write ClickHouse are in streams/view_sinks.py."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

import faust
import orjson

from schemas.span import Unreadable
from spanstream.metrics import SPANS_DEAD_LETTERED, SPANS_FOLDED
from spanstream.settings import Settings
from streams.changelog import PublishedChangelogTable
from streams.derived import DerivedPublisher
from streams.health import HealthRules
from streams.heap import settle_heap
from streams.pricing import PriceBook
from streams.frame_step import fold_frame
from streams.sessions import SessionState, dump_state, load_state, session_record
from streams.span_batches import BadBatch, SourceMessage, unpack
from streams.topics import SESSIONS_TABLE, declare_topics, rows_topic_name

log = logging.getLogger(__name__)
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
            # `sessions` and `health` records go to the frame's partition, as the rows and the
            # changelog do: a session's spans all come through one partition, so its key still
            # lands in one partition, and the frame's records leave in one produce request.
            # Partitioned by key, they spread over every partition, each lingering on its own
            # clock: ~480 produce requests a second at 10,000 spans/s, ~0.2 ms of broker each.
            partition = event.message.partition
            for key, state in batch.states.items():
                if key in batch.changed:
                    sessions[key] = orjson.dumps(dump_state(state))
                # Durable before this event's offset is committed (streams/derived.py). A
                # redelivery re-sends the same versions, which is harmless.
                derived.publish(settings.sessions_topic, key, orjson.dumps(session_record(state, state.health_tag)),
                                partition=partition)
            for key, change in batch.health_changes:
                derived.publish(settings.health_topic, key, orjson.dumps(change), partition=partition)


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
