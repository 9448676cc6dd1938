"""The Kafka topics the worker reads and writes."""

from __future__ import annotations

import faust

from spanstream.settings import Settings


def dead_letter_topic_name(source: str) -> str:
    return f"{source}.dlq"


def spans_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    # Raw bytes: decoding is ours, so a bad message reaches the dead-letter topic intact.
    return app.topic(settings.spans_topic, key_serializer="raw", value_serializer="raw")


def spans_dead_letter_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    return app.topic(dead_letter_topic_name(settings.spans_topic), key_serializer="raw", value_serializer="raw")
