"""Producing and consuming spans on the real broker."""

import uuid
from datetime import UTC, datetime

from confluent_kafka import Consumer

from schemas.span import Span, decode_span
from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer, publish_spans


def consume(settings, topic: str, count: int, timeout: float = 30.0):
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    messages = []
    try:
        deadline = datetime.now().timestamp() + timeout
        while len(messages) < count and datetime.now().timestamp() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_spans_published_arrive_keyed_by_session(settings):
    created = ensure_topics(settings)
    assert settings.spans_topic in created and f"{settings.spans_topic}.dlq" in created
    assert ensure_topics(settings) == []  # idempotent

    now = datetime.now(UTC)
    spans = [
        Span(project_id="p", session_id=f"session-{i % 3}", span_id=f"span-{i}", started_at=now)
        for i in range(30)
    ]
    assert publish_spans(make_producer(settings), settings.spans_topic, spans) == 30

    messages = consume(settings, settings.spans_topic, 30)
    assert sorted(decode_span(m.value()).span_id for m in messages) == sorted(s.span_id for s in spans)
    partitions_by_session: dict[str, set[int]] = {}
    for message in messages:
        partitions_by_session.setdefault(message.key().decode(), set()).add(message.partition())
    # Per-session state depends on it: every session lives in exactly one partition.
    assert all(len(partitions) == 1 for partitions in partitions_by_session.values())
    assert len(partitions_by_session) == 3


def _java_partition(key: bytes, partitions: int) -> int:
    """Kafka's DefaultPartitioner for a keyed record: murmur2 (seed 0x9747b28c), positive, modulo."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    h = (0x9747B28C ^ len(key)) & mask
    body = len(key) - len(key) % 4
    for i in range(0, body, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = key[body:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def test_a_session_lands_where_a_java_producer_would_put_it(settings):
    """Producers in other languages publish to the same topic; if our producer partitioned
    differently, one session's spans would be folded in two partitions as two sessions."""
    ensure_topics(settings)
    now = datetime.now(UTC)
    spans = [Span(project_id="p", session_id=f"java-{uuid.uuid4().hex[:6]}-{i}", span_id=f"j-{i}", started_at=now)
             for i in range(40)]
    publish_spans(make_producer(settings), settings.spans_topic, spans)
    wanted = {span.session_id for span in spans}
    messages = [m for m in consume(settings, settings.spans_topic, 70, timeout=15) if m.key().decode() in wanted]
    assert len(messages) == 40
    assert all(m.partition() == _java_partition(m.key(), settings.spans_partitions) for m in messages)
    assert len({m.partition() for m in messages}) == settings.spans_partitions  # spread, not one partition
