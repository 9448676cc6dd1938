"""Reading what landed on a topic, for assertions."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError

from schemas.span import Span, decode_message


def read_all_spans(bootstrap: str, topic: str, timeout: float = 20.0) -> list[Span]:
    """Every span on `topic` now: reads each partition to its end. For topics written by
    acknowledged requests, which are complete by the time the request returned."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.subscribe([topic])
    spans: list[Span] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            decoded, unreadable = decode_message(message.value())
            assert not unreadable, unreadable
            spans.extend(decoded)
    finally:
        consumer.close()
    assert len(at_end) == partitions, f"could not read {topic} to its end within {timeout} s"
    return spans
