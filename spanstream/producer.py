"""Publishes Span v1 messages to the `spans` topic the way every producer should."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, Producer

from schemas.span import Span, encode_span
from spanstream.kafka import MAX_MESSAGE_BYTES
from spanstream.settings import Settings


class PublishError(RuntimeError):
    """The broker did not acknowledge some spans; they were not stored."""


def make_producer(settings: Settings, **overrides) -> Producer:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap,
        # Idempotent with acks=all: a retried send neither duplicates nor reorders a partition.
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        # The Java client's partitioner: a session keyed the same way lands in the same
        # partition whichever client published it (librdkafka's default is CRC32-based).
        "partitioner": "murmur2_random",
    }
    config.update(overrides)
    return Producer(config)


def publish_spans(producer: Producer, topic: str, spans: Iterable[Span], timeout: float = 30.0) -> int:
    """Sends spans keyed by session and waits until the broker has acknowledged every one."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message) -> None:
        if error is not None:
            failures.append(error)

    count = 0
    for span in spans:
        producer.produce(topic, key=span.session_id.encode(), value=encode_span(span), on_delivery=delivered)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout)
    if failures or remaining:
        raise PublishError(f"{len(failures) + remaining} of {count} spans were not acknowledged: {failures[:3]}")
    return count
