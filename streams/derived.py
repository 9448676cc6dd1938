"""Publishes the derived topics (`sessions`, `health`) through librdkafka, flushed before Faust commits.

Faust sends through aiokafka at a few hundred microseconds a message, and the fold sends two
per input message; librdkafka takes microseconds. At-least-once is kept by hooking our flush
into the producer flush Faust runs before every offset commit: a commit happens only after
every derived record of the events it covers is acknowledged, and if one cannot be, the commit
fails and the events are processed again (their records carry the same versions).
"""

from __future__ import annotations

import asyncio

import faust
from confluent_kafka import KafkaError

from spanstream.producer import make_producer
from spanstream.settings import Settings


class DerivedPublishError(RuntimeError):
    """The broker did not acknowledge derived records; the offsets they follow from stay uncommitted."""


class DerivedPublisher:
    def __init__(self, settings: Settings) -> None:
        self._producer = make_producer(settings, **{"linger.ms": 5, "compression.type": "lz4"})
        self._failures: list[KafkaError] = []

    def _delivered(self, error: KafkaError | None, _message) -> None:
        if error is not None:
            self._failures.append(error)

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let it drain
        self._producer.poll(0)

    async def flush(self) -> None:
        remaining = await asyncio.to_thread(self._producer.flush, 60)
        failures, self._failures = self._failures, []
        if failures or remaining:
            raise DerivedPublishError(
                f"{len(failures) + remaining} derived records were not acknowledged: {failures[:3]}"
            )

    def attach(self, app: faust.App) -> None:
        """Makes Faust's pre-commit producer flush flush us too."""
        producer = app.producer
        faust_flush = producer.flush

        async def flush_both() -> None:
            await faust_flush()
            await self.flush()

        producer.flush = flush_both
