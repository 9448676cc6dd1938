"""Faust's Kafka transport with its fetches paced: at most one per `PACE_S` per broker.

Faust's aiokafka consumer asks for data again the moment a fetch returns, and the broker answers
as soon as any byte is there: at 10,000 spans/s arriving a few sessions at a time, the fold and
the sinks each sent a fetch per produce request, hundreds a second, and the broker on the same
two cores spent ~240 µs of CPU on each (docs/benchmarks.md). Holding fetches at the broker
(fetch_min_bytes) batches them too, but then an idle consumer also asks every hold; waiting
here instead, before the next fetch, lets what arrives meanwhile come back in one answer, and
an idle consumer's fetch still waits at the broker for its 1.5 s. Under a backlog nothing
changes: a partition whose records are not consumed yet is not fetched anyway.
"""

from __future__ import annotations

import asyncio

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

# What pacing adds to a span's produce-to-visible time, per consumer on its path (the fold, then
# the sinks), against a p99 budget of 2 s.
PACE_S = 0.05


def pace_fetches(consumer: aiokafka.AIOKafkaConsumer, pace_s: float = PACE_S) -> aiokafka.AIOKafkaConsumer:
    """Before `start()`. aiokafka builds its fetcher in `start()`, and its fetch routine looks up
    `_proc_fetch_request` on every request and keeps a broker "in flight" until it returns, so
    waiting at its start delays that broker's next fetch (faust pins aiokafka 0.14.0;
    tests/test_paced_fetch.py fails if that changes)."""
    start = consumer.start

    async def start_paced() -> None:
        await start()
        fetcher = consumer._fetcher
        fetch = fetcher._proc_fetch_request
        loop = asyncio.get_running_loop()
        last_sent: dict[int, float] = {}

        async def paced(assignment, node_id, request):
            wait = last_sent.get(node_id, -pace_s) + pace_s - loop.time()
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    return False  # as aiokafka's own: closing, or the partitions were taken away
            last_sent[node_id] = loop.time()
            return await fetch(assignment, node_id, request)

        fetcher._proc_fetch_request = paced

    consumer.start = start_paced
    return consumer


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport) -> aiokafka.AIOKafkaConsumer:
        return pace_fetches(super()._create_worker_consumer(transport))


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class PacedFetchTransport(faust_aiokafka.Transport):
    Consumer = _Consumer
