"""Publishes each alert state change to the `alerts` topic, keyed by project, for the live feed."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from api.alerts.payload import state_change_record
from spanstream.producer import make_producer
from spanstream.settings import Settings

log = logging.getLogger(__name__)


class AlertFeed:
    """Best effort, after the change committed in PostgreSQL (the system of record for alerts):
    a record lost to a broker outage loses a live event, never an incident or a webhook."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.alerts_topic
        self._producer = make_producer(settings, **{"message.timeout.ms": 30_000, "error_cb": self._on_error})

    def publish(self, alert: dict[str, Any], event: str, actor: str | None = None) -> None:
        try:
            self._producer.produce(self._topic, key=str(alert["project_id"]).encode(),
                                   value=state_change_record(alert, event, actor), on_delivery=self._delivered)
        except (BufferError, KafkaException) as error:
            log.warning("alert %s %s not published to %s: %s", alert["id"], event, self._topic, error)
        self._producer.poll(0)

    def close(self, timeout: float = 5.0) -> None:
        self._producer.flush(timeout)

    def _delivered(self, error: KafkaError | None, _message) -> None:
        if error is not None:
            log.warning("alert record not published to %s: %s", self._topic, error)

    def _on_error(self, error: KafkaError) -> None:
        log.warning("alert feed producer: %s", error)
