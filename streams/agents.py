"""Faust agents: decode what arrives, hand it to the sink, dead-letter what cannot be read."""

from __future__ import annotations

import logging

import faust
from pydantic import ValidationError

from schemas.span import decode_span
from spanstream.settings import Settings
from streams.sink import ClickHouseSpanSink
from streams.topics import spans_dead_letter_topic, spans_topic

log = logging.getLogger(__name__)


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'span'}: {e['msg']}" for e in error.errors())
    return f"{type(error).__name__}: {error}"


def register_agents(app: faust.App, settings: Settings, sink: ClickHouseSpanSink) -> None:
    source = spans_topic(app, settings)
    dead_letters = spans_dead_letter_topic(app, settings)

    @app.agent(source, name="spans-to-clickhouse")
    async def spans_to_clickhouse(stream: faust.StreamT) -> None:
        # take_events acks a batch only after this body returns, i.e. after the insert is
        # durable: a crash before that redelivers the batch, and the replacing table dedups it.
        async for events in stream.take_events(settings.sink_batch_size, within=settings.sink_batch_seconds):
            for event in events:
                try:
                    sink.add(decode_span(event.value))
                except (ValidationError, ValueError) as error:
                    message = event.message
                    # force: publish now and wait for the broker, not when the batch is acked.
                    delivery = await dead_letters.send(
                        force=True,
                        key=message.key,
                        value=message.value,
                        headers={
                            "error": _reason(error).encode()[:4096],
                            "source_topic": message.topic.encode(),
                            "source_partition": str(message.partition).encode(),
                            "source_offset": str(message.offset).encode(),
                        },
                    )
                    await delivery
                    log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, _reason(error))
            await sink.flush()
