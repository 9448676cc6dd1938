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
