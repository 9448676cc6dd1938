"""The Kafka topics the worker reads and writes. Their configs live in spanstream/kafka.py."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from spanstream.settings import Settings
from spanstream.topic_names import batches_topic_name, dead_letter_topic_name, rows_topic_name

SESSIONS_TABLE = "sessions"


@dataclass(frozen=True)
class Topics:
    spans: faust.TopicT
    span_batches: faust.TopicT
    span_rows: faust.TopicT
    spans_dead_letters: faust.TopicT
    sessions: faust.TopicT
    health: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    # Raw bytes everywhere: decoding is ours, so a bad message reaches the dead-letter topic intact.
    def raw(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    return Topics(
        spans=raw(settings.spans_topic),
        span_batches=raw(batches_topic_name(settings.spans_topic)),
        span_rows=raw(rows_topic_name(settings.spans_topic)),
        spans_dead_letters=raw(dead_letter_topic_name(settings.spans_topic)),
        sessions=raw(settings.sessions_topic),
        health=raw(settings.health_topic),
    )
