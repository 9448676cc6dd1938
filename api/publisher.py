"""Publishes accepted spans to Kafka and resolves only once the broker has acknowledged them.

A request is answered after its spans are durable in Kafka, never after ClickHouse: ingestion
does not wait on the analytics store. librdkafka delivers on its own threads; one poll thread
runs the delivery callbacks, which hand results back to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from confluent_kafka import KafkaError, KafkaException

from schemas.span import Span, session_messages
from spanstream.producer import make_producer
from spanstream.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """Kafka did not acknowledge in time, or our send buffer is full: try again later."""


class SpanPublisher:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.spans_topic
        self._producer = make_producer(
            settings,
            **{
                # Past this the delivery fails and the request answers 503: the caller retries.
                "message.timeout.ms": int(settings.ingest_ack_timeout_seconds * 1000),
                "linger.ms": 2,
                "queue.buffering.max.kbytes": 256 * 1024,
                "error_cb": self._on_error,
            },
        )
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="span-publisher-poll", daemon=True)

    def start(self) -> SpanPublisher:
        self._poller.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._poller.join()
        remaining = self._producer.flush(timeout)
        if remaining:
            log.error("%d span messages were still unacknowledged at shutdown", remaining)

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    def _on_error(self, error: KafkaError) -> None:
        log.warning("kafka producer: %s", error)

    async def check_broker(self, timeout: float = 2.0) -> None:
        """Raises when the broker does not answer a metadata request within `timeout`."""
        await asyncio.to_thread(self._producer.list_topics, self._topic, timeout)

    async def publish(self, spans: list[Span]) -> None:
        """Returns when every span is acknowledged; raises BrokerUnavailable otherwise."""
        messages = session_messages(spans)
        if not messages:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[KafkaError]] = loop.create_future()
        errors: list[KafkaError] = []
        pending = len(messages)

        def delivered(error: KafkaError | None, _message) -> None:
            nonlocal pending
            if error is not None:
                errors.append(error)
            pending -= 1
            if pending == 0:
                loop.call_soon_threadsafe(_settle, done, errors)

        try:
            for key, value in messages:
                self._producer.produce(self._topic, value=value, key=key, on_delivery=delivered)
        except BufferError as error:
            # Messages already queued will still be delivered; the caller retries the whole
            # batch and downstream dedups span ids, so nothing is lost or counted twice.
            raise BrokerUnavailable("the ingestion buffer is full") from error
        except KafkaException as error:
            raise BrokerUnavailable(str(error)) from error
        failures = await done
        if failures:
            raise BrokerUnavailable(f"Kafka did not acknowledge {len(failures)} messages: {failures[0].str()}")


def _settle(future: asyncio.Future, errors: list[KafkaError]) -> None:
    if not future.done():
        future.set_result(errors)
