"""Faust's Kafka transport with fetches the broker holds until it has a batch.

Faust builds its aiokafka consumer with `fetch_min_bytes` 1, so a caught-up consumer sends a
fetch for every produce request that lands on its partitions: at 10,000 spans/s arriving a few
sessions at a time, the fold and the sinks each sent hundreds a second, and the broker on the
same two cores spent ~240 µs of CPU on each (docs/benchmarks.md). Held until a mebibyte or
`HOLD_MS` has gathered, a fetch returns at most `1000 / HOLD_MS` times a second when spans
trickle in, and at once under a backlog, where the bytes are already there.
"""

from __future__ import annotations

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

# What a held fetch adds to a span's produce-to-visible time, per consumer on its path (the
# fold, then the sinks): the p99 budget is 2 s.
HOLD_MS = 50
HOLD_BYTES = 1 << 20


def hold_fetches(consumer: aiokafka.AIOKafkaConsumer) -> aiokafka.AIOKafkaConsumer:
    """Before `start()`: aiokafka hands these two to its fetcher when the consumer starts
    (faust pins aiokafka 0.14.0, and tests/test_held_fetch.py fails if that changes)."""
    consumer._fetch_min_bytes = HOLD_BYTES
    consumer._fetch_max_wait_ms = HOLD_MS
    return consumer


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport) -> aiokafka.AIOKafkaConsumer:
        return hold_fetches(super()._create_worker_consumer(transport))


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class HeldFetchTransport(faust_aiokafka.Transport):
    Consumer = _Consumer
