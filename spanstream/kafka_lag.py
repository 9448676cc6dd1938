"""How far each consumer group of a deployment is behind its topics, read from the broker.

Read by the process that serves /metrics, whatever process the consumers run in: a fold worker
on another machine, or one that is down (its lag then grows, which is what an alert wants).
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from spanstream.settings import Settings
from spanstream.topic_names import batches_topic_name, rows_topic_name, sink_group_name


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    messages: int


def deployment_groups(settings: Settings) -> dict[str, list[str]]:
    """Each consumer group of this deployment and the topics it reads (spanstream/serve.py)."""
    spans = settings.spans_topic
    return {
        f"{settings.worker_id}-batcher": [spans],
        settings.worker_id: [batches_topic_name(spans)],
        sink_group_name(settings.worker_id, "spans"): [rows_topic_name(spans)],
        sink_group_name(settings.worker_id, "sessions"): [settings.sessions_topic],
        sink_group_name(settings.worker_id, "health"): [settings.health_topic],
    }


class LagReader:
    """Keeps one metadata-only consumer per group (it never joins the group, so it moves no
    partition): a group's committed offsets are read through a client with its group id."""

    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self._settings = settings
        self._timeout = timeout
        self._clients: dict[str, Consumer] = {}

    def _client(self, group: str) -> Consumer:
        client = self._clients.get(group)
        if client is None:
            client = Consumer({"bootstrap.servers": self._settings.kafka_bootstrap, "group.id": group,
                               "enable.auto.commit": False, "socket.timeout.ms": 5000})
            self._clients[group] = client
        return client

    def read(self) -> list[Lag]:
        lags = []
        for group, topics in deployment_groups(self._settings).items():
            client = self._client(group)
            metadata = client.list_topics(timeout=self._timeout).topics
            partitions = [TopicPartition(topic, p) for topic in topics if topic in metadata
                          for p in sorted(metadata[topic].partitions)]
            if not partitions:
                continue
            for committed in client.committed(partitions, timeout=self._timeout):
                low, high = client.get_watermark_offsets(committed, timeout=self._timeout, cached=False)
                # Nothing committed yet: everything retained is still to be read.
                position = committed.offset if committed.offset >= 0 else low
                lags.append(Lag(group, committed.topic, committed.partition, max(0, high - position)))
        return lags

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
