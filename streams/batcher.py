"""Copies `spans` into `spans.batches`: what each partition received, one frame per poll.

Runs as a thread of every fold process, in a consumer group of its own. A frame goes to the
partition its spans came from, so a session's spans, its table partition and its changelog
partition stay one and the same. Source offsets are committed only after the broker has
acknowledged the frames holding them: a crash re-sends a batch at worst, and every reader of
`spans.batches` ignores a span id it has seen (the fold) or replaces on it (the spans table).
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from spanstream.producer import make_producer
from spanstream.settings import Settings
from streams.span_batches import pack
from streams.topics import batches_topic_name

log = logging.getLogger(__name__)

# A frame stays far below the topic's 8 MiB message limit; one oversized span goes alone.
FRAME_BYTES = 1024 * 1024
POLL_MESSAGES = 5000
# How long a poll waits to fill up: the latency the batcher adds when spans trickle in.
LINGER_SECONDS = 0.1


class SpanBatcher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._source = settings.spans_topic
        self._target = batches_topic_name(settings.spans_topic)

    def _consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self._settings.kafka_bootstrap,
            "group.id": f"{self._settings.worker_id}-batcher",
            "client.id": "spanstream-batcher",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # As the fold's group: a batcher that died hands its partitions over within 10 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            "fetch.queue.backoff.ms": 5,
            # Held at the broker until a mebibyte or 50 ms has gathered: fetching whatever each
            # produce request brought meant hundreds of fetches a second at 10,000 spans/s in
            # small messages, and the broker on the same cores spent ~240 µs on each.
            "fetch.wait.max.ms": 50,
            "fetch.min.bytes": 1024 * 1024,
            # librdkafka prefetches up to 64 MiB per partition by default; a few frames' worth
            # (a frame is at most 1 MiB) keeps the copy busy at a fraction of the memory.
            "queued.max.messages.kbytes": 8 * 1024,
        })

    def run(self, stopping: threading.Event) -> None:
        """Copies until `stopping` is set; raises if the broker stays unreachable."""
        consumer = self._consumer()
        producer = make_producer(self._settings, **{"linger.ms": 1000, "client.id": "spanstream-batcher"})
        consumer.subscribe([self._source])
        try:
            while not stopping.is_set():
                messages = consumer.consume(num_messages=POLL_MESSAGES, timeout=LINGER_SECONDS)
                if messages:
                    self._copy(consumer, producer, messages)
        finally:
            producer.flush(10)
            consumer.close()

    def _copy(self, consumer: Consumer, producer, messages) -> None:
        by_partition: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("spans batcher: %s", error)
                continue
            by_partition.setdefault(message.partition(), []).append((message.offset(), message.key(), message.value()))
        if not by_partition:
            return
        failures: list[KafkaError] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failures.append(error)

        # Linger is long on purpose: flush() sends every frame queued at once, in one request,
        # where a short linger sent each partition's frames on their own (~140 requests a second).
        for partition, items in by_partition.items():
            for frame in _frames(items):
                producer.produce(self._target, value=frame, partition=partition, on_delivery=delivered)
        delay = 0.1
        while producer.flush(30) or failures:
            # Nothing is committed: seek back and copy the same messages again.
            log.warning("spans batcher: %d frames not acknowledged (%s); retrying in %.1f s",
                        len(failures) or len(producer), failures[:1], delay)
            failures.clear()
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            for partition, items in by_partition.items():
                for frame in _frames(items):
                    producer.produce(self._target, value=frame, partition=partition, on_delivery=delivered)
        commits = [TopicPartition(self._source, partition, items[-1][0] + 1) for partition, items in by_partition.items()]
        try:
            consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as error:
            # A rebalance took the partitions: their new owner copies from the last commit,
            # which re-sends frames the readers already dedup.
            log.warning("spans batcher: commit failed (%s); the next owner re-copies", error)


def _frames(items: list[tuple[int, bytes | None, bytes | None]]):
    start, size = 0, 0
    for index, (_, key, value) in enumerate(items):
        item_size = 16 + len(key or b"") + len(value or b"")
        if size and size + item_size > FRAME_BYTES:
            yield pack(items[start:index])
            start, size = index, 0
        size += item_size
    yield pack(items[start:])
