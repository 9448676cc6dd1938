"""Publishes what the fold writes (the table's changelog, `sessions`, `health`) through
librdkafka, flushed before Faust commits.

Faust sends through aiokafka at a few hundred microseconds a message, and the fold sends three
per session it touches; librdkafka takes microseconds. At-least-once is kept by hooking our
flush into the producer flush Faust runs before every offset commit: a commit happens only after
every record of the events it covers is acknowledged, and if one cannot be, the commit fails and
the events are processed again (their records carry the same versions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust
from confluent_kafka import KafkaError, Message

from spanstream.producer import make_producer
from spanstream.settings import Settings

# (topic, partition) -> the highest offset the broker acknowledged since the last flush
Acked = dict[tuple[str, int], int]


class DerivedPublishError(RuntimeError):
    """The broker did not acknowledge derived records; the offsets they follow from stay uncommitted."""


class DerivedPublisher:
    def __init__(self, settings: Settings) -> None:
        self._producer = make_producer(settings, **{"linger.ms": 20, "compression.type": "lz4", "client.id": "spanstream-fold"})
        self._failures: list[KafkaError] = []
        self._acked: Acked = {}
        self._queued = 0
        self._on_flushed: list[Callable[[Acked], None]] = []

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(error)
            return
        where = (message.topic(), message.partition())
        if message.offset() > self._acked.get(where, -1):
            self._acked[where] = message.offset()

    def publish(self, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
        """Queues one record; `partition` -1 lets the key choose (murmur2, as the Java client and
        Faust do: spanstream.producer)."""
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, partition=partition, on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let it drain
        self._queued += 1
        if self._queued % 1024 == 0:
            self._producer.poll(0)  # serve delivery reports now and then, not on every record

    def on_flushed(self, listener: Callable[[Acked], None]) -> None:
        """`listener` gets the acknowledged offsets after every successful flush, on the event loop."""
        self._on_flushed.append(listener)

    async def flush(self) -> None:
        remaining = await asyncio.to_thread(self._producer.flush, 60)
        failures, self._failures = self._failures, []
        acked, self._acked = self._acked, {}
        if failures or remaining:
            raise DerivedPublishError(
                f"{len(failures) + remaining} derived records were not acknowledged: {failures[:3]}"
            )
        for listener in self._on_flushed:
            listener(acked)

    def attach(self, app: faust.App) -> None:
        """Makes Faust's pre-commit producer flush flush us too."""
        producer = app.producer
        faust_flush = producer.flush

        async def flush_both() -> None:
            await faust_flush()
            await self.flush()

        producer.flush = flush_both
