"""Sends one delivery: a signed POST, and what its answer means for the next attempt."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from api.alerts.payload import SIGNATURE_HEADER, TIMESTAMP_HEADER, retry_delay, retryable, signature
from api.repositories.alert_deliveries import DueDelivery


@dataclass(frozen=True)
class Attempt:
    status: int | None  # None: no HTTP answer
    error: str | None  # None: delivered
    retry_in: float | None  # seconds until the next attempt; None: do not retry


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


async def send(client: httpx.AsyncClient, delivery: DueDelivery, max_attempts: int, base_seconds: float) -> Attempt:
    body = delivery.body.encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Spanstream-Alerts/1",
        # The same on every attempt of this delivery: a receiver that saw it already can skip it.
        "Idempotency-Key": str(delivery.id),
        "X-Spanstream-Delivery": str(delivery.id),
        "X-Spanstream-Event": delivery.event,
        TIMESTAMP_HEADER: timestamp,
    }
    if delivery.secret:
        headers[SIGNATURE_HEADER] = signature(delivery.secret, timestamp, body)
    retry_after = None
    try:
        response = await client.post(delivery.webhook_url, content=body, headers=headers)
    except httpx.HTTPError as error:
        status, error_text = None, f"{type(error).__name__}: {error}"[:1000] or type(error).__name__
    else:
        if 200 <= response.status_code < 300:
            return Attempt(response.status_code, None, None)
        status, error_text = response.status_code, f"HTTP {response.status_code}: {response.text[:500]}"
        retry_after = _retry_after(response)
    if not retryable(status) or delivery.attempts >= max_attempts:
        return Attempt(status, error_text, None)
    return Attempt(status, error_text, retry_delay(delivery.attempts, base_seconds, retry_after))
