"""Kafka administration shared by every entry point: reachability and the topics we own."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from spanstream.settings import Settings
from spanstream.topic_names import batches_topic_name, dead_letter_topic_name, rows_topic_name

DAY_MS = 24 * 60 * 60 * 1000
# Four payloads of 128 Ki characters, up to 4 bytes each, plus the rest of a span.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class KafkaUnavailable(RuntimeError):
    """The broker does not answer; the message says what to do."""


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "socket.timeout.ms": 5000})


def check_kafka(settings: Settings, timeout: float = 10.0) -> None:
    try:
        _admin(settings).list_topics(timeout=timeout)
    except KafkaException as error:
        raise KafkaUnavailable(
            f"Kafka does not answer at {settings.kafka_bootstrap} ({error}). "
            "Start it with `spanstream infra up`, or set SPANSTREAM_KAFKA_BOOTSTRAP."
        ) from error


def changelog_topic_name(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog, which we create with our configs before the worker starts."""
    return f"{settings.worker_id}-{table}-changelog"


def topic_specs(settings: Settings) -> list[NewTopic]:
    spans = settings.spans_topic
    retention_ms = int(settings.spans_retention_hours * 60 * 60 * 1000)
    return [
        # Keyed by session: one partition holds all of a session's spans. Batch messages and
        # spans with capped payloads can pass Kafka's 1 MB default, hence the larger limit.
        NewTopic(spans, settings.spans_partitions, 1, config={
            "retention.ms": str(retention_ms), "compression.type": "lz4", "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }),
        # The batcher's frames of `spans`, partition for partition: kept as long as `spans`, so
        # a fold or sink that was down for as long as spans are kept still finds its input.
        NewTopic(batches_topic_name(spans), settings.spans_partitions, 1, config={
            "retention.ms": str(retention_ms), "compression.type": "lz4", "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }),
        # Spans-table rows the fold encoded from the frames it validated, so that the process
        # owning ClickHouse only inserts them (streams/agents.py). Kept as long as `spans`, for
        # the same reason as the frames.
        NewTopic(rows_topic_name(spans), settings.spans_partitions, 1, config={
            "retention.ms": str(retention_ms), "compression.type": "lz4", "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }),
        NewTopic(dead_letter_topic_name(spans), 1, 1, config={
            "retention.ms": str(30 * DAY_MS), "compression.type": "lz4", "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }),
        # Latest record per session: compaction keeps what a rebuild of the sessions view needs.
        NewTopic(settings.sessions_topic, settings.spans_partitions, 1, config={
            "cleanup.policy": "compact", "compression.type": "lz4", "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }),
        NewTopic(settings.health_topic, settings.spans_partitions, 1, config={
            "retention.ms": str(retention_ms), "compression.type": "lz4",
        }),
        # MCP server health check results, keyed project/server (docs/health-checks.md).
        NewTopic(settings.health_checks_topic, settings.spans_partitions, 1, config={
            "retention.ms": str(retention_ms), "compression.type": "lz4",
        }),
        # Alert state changes, keyed by project (docs/alerts.md); the live feed relays them.
        NewTopic(settings.alerts_topic, settings.spans_partitions, 1, config={
            "retention.ms": str(retention_ms), "compression.type": "lz4",
        }),
        # The sessions table's changelog: co-partitioned with `spans`, which Faust requires.
        NewTopic(changelog_topic_name(settings, "sessions"), settings.spans_partitions, 1, config={
            "cleanup.policy": "compact", "compression.type": "lz4", "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }),
    ]


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Creates missing topics with their configs; returns the names it created."""
    check_kafka(settings)
    admin = _admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [spec for spec in topic_specs(settings) if spec.topic not in existing]
    created = []
    for name, future in (admin.create_topics(missing, operation_timeout=timeout).items() if missing else []):
        try:
            future.result()
            created.append(name)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won
                raise
    return created


def delete_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Deletes the topics `ensure_topics` creates for these settings (benchmarks' fresh topics);
    returns the names it deleted and waits until the broker has done so."""
    admin = _admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    names = [spec.topic for spec in topic_specs(settings) if spec.topic in existing]
    for future in (admin.delete_topics(names, operation_timeout=timeout).values() if names else []):
        future.result()
    return names
