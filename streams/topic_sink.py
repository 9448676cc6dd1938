"""One derived topic into ClickHouse: read by librdkafka on a thread of its own, written in
batches, committed only once the batch is durable.

The sinks were Faust agents. They keep no table, and in the process that owns ClickHouse
Faust's consumer (aiokafka, in Python: fetch requests, record parsing, lz4, and Faust's
per-event machinery) took about 45% of that process's busy time at 15,000 spans/s, as much as
ClickHouse itself. librdkafka fetches and decompresses in C and hands over many messages per
call.

The contract is the one Faust's `take_events` gave: a batch's values go to its writers, the
writers flush (which blocks, retrying, while ClickHouse is unavailable, so consumption pauses),
and only then are the batch's offsets committed. A crash redelivers what was not committed, and
every table written here replaces on its key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from spanstream.settings import Settings
from spanstream.topic_names import faust_sink_group_name, sink_group_name
from streams.sink import BodyWriter

log = logging.getLogger(__name__)

POLL_MESSAGES = 1000
IDLE_POLL_SECONDS = 0.5


class TopicSink:
    """`add(value)` hands each message's value to the writers; `writers` are flushed in order at
    the end of every batch: `max_messages` messages, or `max_seconds` after the first one."""

    def __init__(self, settings: Settings, name: str, topic: str, add: Callable[[bytes], None],
                 writers: Sequence[BodyWriter], max_messages: int, max_seconds: float,
                 fetch_wait_ms: int = 100) -> None:
        self.name = name
        self.topic = topic
        self.group = sink_group_name(settings.worker_id, name)
        self._settings = settings
        self._add = add
        self._writers = tuple(writers)
        self._max_messages = max_messages
        self._max_seconds = max_seconds
        self._fetch_wait_ms = fetch_wait_ms
        self._held = 0
        self._offsets: dict[int, int] = {}  # partition -> offset of the last message held

    def _consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self._settings.kafka_bootstrap,
            "group.id": self.group,
            "client.id": f"spanstream-sink-{self.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # As the fold's group: a sink that died hands its partitions over within 10 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            # A flush retried while ClickHouse is unavailable does not poll. Past this the
            # consumer leaves the group, its commit then fails, and the batch is delivered again.
            "max.poll.interval.ms": 600_000,
            # Held at the broker for a mebibyte or fetch_wait_ms, as the batcher's fetches are:
            # a fetch per produce request costs the broker on the same cores ~240 µs each.
            "fetch.min.bytes": 1024 * 1024,
            "fetch.wait.max.ms": self._fetch_wait_ms,
            "fetch.queue.backoff.ms": 5,
            "queued.max.messages.kbytes": 16 * 1024,
        })

    def run(self, stopping: threading.Event) -> None:
        """Sinks until `stopping` is set, then writes and commits what it holds."""
        adopted = adopt_faust_offsets(self._settings, self.topic, self.group)
        if adopted:
            log.info("%s: took up the Faust sink's offsets on %d partitions of %s", self.group, adopted, self.topic)
        consumer = self._consumer()
        consumer.subscribe([self.topic], on_revoke=self._handing_over, on_lost=self._handing_over)
        try:
            while not stopping.is_set():
                self._fill(consumer, stopping)
                self._write(consumer)
        finally:
            consumer.close()

    def _fill(self, consumer: Consumer, stopping: threading.Event) -> None:
        deadline: float | None = None
        while not stopping.is_set():
            wait = IDLE_POLL_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
            messages = consumer.consume(num_messages=min(POLL_MESSAGES, self._max_messages - self._held), timeout=wait)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s: %s", self.group, error)
                    continue
                value = message.value()
                if value is not None:  # a tombstone on a compacted topic removes nothing here
                    self._add(value)
                self._offsets[message.partition()] = message.offset()
                self._held += 1
            if not self._held:  # nothing yet, or a hand-over just wrote what was held
                deadline = None
                continue
            if deadline is None:
                deadline = time.monotonic() + self._max_seconds
            if self._held >= self._max_messages or time.monotonic() >= deadline:
                return

    def _write(self, consumer: Consumer) -> None:
        if not self._held:
            return
        for writer in self._writers:
            writer.flush()
        commits = [TopicPartition(self.topic, partition, offset + 1) for partition, offset in self._offsets.items()]
        self._offsets.clear()
        self._held = 0
        try:
            consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as error:
            # The partitions moved on: their next owner inserts the batch again, which the
            # replacing tables collapse.
            log.warning("%s: commit failed (%s); the batch will be delivered again", self.group, error)

    def _handing_over(self, consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # Called from within consume(): what is held is written and committed before the
        # partitions go, so that their next owner starts after it.
        self._write(consumer)


def adopt_faust_offsets(settings: Settings, topic: str, group: str, timeout: float = 10.0) -> int:
    """On a sink group's first start, commits the offsets the Faust sink group had reached on
    `topic`, so that an upgrade does not insert the whole retained topic again. Returns how many
    partitions it took up; 0 once `group` has committed anything."""
    def client(group_id: str) -> Consumer:
        return Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group_id,
                         "enable.auto.commit": False})

    ours = client(group)
    try:
        metadata = ours.list_topics(topic, timeout=timeout).topics[topic]
        partitions = [TopicPartition(topic, partition) for partition in metadata.partitions]
        if any(tp.offset >= 0 for tp in ours.committed(partitions, timeout=timeout)):
            return 0
        faust = client(faust_sink_group_name(settings.worker_id))
        try:
            reached = [tp for tp in faust.committed(partitions, timeout=timeout) if tp.offset >= 0]
        finally:
            faust.close()
        if reached:
            ours.commit(offsets=reached, asynchronous=False)
        return len(reached)
    finally:
        ours.close()
