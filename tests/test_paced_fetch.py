"""The fold's and the sinks' Kafka fetches are paced: spans trickling in come back in batches,
each still within a fraction of a second."""

import asyncio
import statistics
import time
import uuid

import pytest
from aiokafka import TopicPartition

from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer
from streams.app import create_faust_app
from streams.paced_fetch import PACE_S

MESSAGES = 100
EVERY_S = 0.01


def _trickle(settings, sent: dict[bytes, float]) -> None:
    """One produce request a message, every 10 ms: what a caught-up consumer sees at
    100 requests a second."""
    producer = make_producer(settings)
    for n in range(MESSAGES):
        value = f"message {n}".encode()
        producer.produce(settings.spans_topic, value, partition=0)
        assert producer.flush(10) == 0
        sent[value] = time.perf_counter()  # acknowledged: on the broker from here on
        time.sleep(EVERY_S)


@pytest.mark.anyio
async def test_a_trickle_of_messages_comes_back_in_batches_and_promptly(settings):
    ensure_topics(settings)
    app = create_faust_app(settings, f"paced-fetch-test-{uuid.uuid4().hex[:8]}")
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    await consumer.start()
    sent: dict[bytes, float] = {}
    latencies, answers = [], 0
    try:
        partition = TopicPartition(settings.spans_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)
        producing = asyncio.create_task(asyncio.to_thread(_trickle, settings, sent))
        deadline = time.perf_counter() + 30
        while len(latencies) < MESSAGES and time.perf_counter() < deadline:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            records = [record for batch in batches.values() for record in batch]
            now = time.perf_counter()
            answers += bool(records)
            # A record can come back before its producer's flush returns: counted as 0.
            latencies += [max(0.0, now - sent.get(record.value, now)) for record in records]
        await producing
    finally:
        await consumer.stop()
    assert len(latencies) == MESSAGES
    # Unpaced, nearly every message was an answer (a fetch) of its own.
    assert answers <= MESSAGES / 2, f"{MESSAGES} messages came in {answers} answers"
    # Typically within the pace; the bound on the slowest is loose because a busy machine (the
    # suite beside other work) can stall any process for a few hundred milliseconds, yet below
    # the 1.5 s an idle fetch waits at the broker, which is what a pacing bug would show.
    assert statistics.median(latencies) < PACE_S + 0.1, f"half the messages took over {statistics.median(latencies):.2f} s"
    assert max(latencies) < 1.2, f"the slowest message took {max(latencies):.2f} s"
