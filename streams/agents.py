"""Faust agents: decode what arrives, hand it to the sink, dead-letter what cannot be read."""

from __future__ import annotations

import logging

import faust

from schemas.span import Unreadable, decode_message
from spanstream.settings import Settings
from streams.sink import ClickHouseSpanSink
from streams.topics import spans_dead_letter_topic, spans_topic

log = logging.getLogger(__name__)


def register_agents(app: faust.App, settings: Settings, sink: ClickHouseSpanSink) -> None:
    source = spans_topic(app, settings)
    dead_letters = spans_dead_letter_topic(app, settings)

    @app.agent(source, name="spans-to-clickhouse")
    async def spans_to_clickhouse(stream: faust.StreamT) -> None:
        # take_events acks a batch only after this body returns, i.e. after the insert is
        # durable: a crash before that redelivers the batch, and the replacing table dedups it.
        async for events in stream.take_events(settings.sink_batch_size, within=settings.sink_batch_seconds):
            for event in events:
                spans, unreadable = decode_message(event.value)
                for span in spans:
                    sink.add(span)
                for item in unreadable:
                    await _dead_letter(dead_letters, event.message, item)
            await sink.flush()


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
