"""The fold's and the sinks' Kafka fetches wait at the broker for a batch, but not for long."""

import time
import uuid

import pytest
from aiokafka import TopicPartition

from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer
from streams.app import create_faust_app
from streams.held_fetch import HOLD_BYTES, HOLD_MS


@pytest.mark.anyio
async def test_a_held_fetch_still_brings_one_small_message_within_the_hold(settings):
    ensure_topics(settings)
    app = create_faust_app(settings, f"held-fetch-test-{uuid.uuid4().hex[:8]}")
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    await consumer.start()
    try:
        # What aiokafka's fetcher puts in every fetch request: if an aiokafka upgrade stops
        # reading these where held_fetch sets them, the fold goes back to a fetch per produce.
        assert (consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms) == (HOLD_BYTES, HOLD_MS)
        partition = TopicPartition(settings.spans_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)
        producer = make_producer(settings)
        sent = time.perf_counter()
        producer.produce(settings.spans_topic, b"one small message", partition=0)
        assert producer.flush(10) == 0
        received = []
        while not received and time.perf_counter() - sent < 10:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            received = [record.value for records in batches.values() for record in records]
        waited = time.perf_counter() - sent
    finally:
        await consumer.stop()
    assert received == [b"one small message"]
    # Far below a mebibyte: the broker answers when the hold ends, not when the bytes arrive.
    assert waited < 1.0, f"one message took {waited:.2f} s"
