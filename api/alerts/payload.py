"""Webhook bodies, their signature, retry policy and alert-topic records. No I/O."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

SIGNATURE_HEADER = "X-Spanstream-Signature"
TIMESTAMP_HEADER = "X-Spanstream-Timestamp"
# Longest wait a receiver's Retry-After may ask for: past it, the back-off schedule decides.
MAX_RETRY_AFTER_SECONDS = 600.0

_INCIDENT_FIELDS = ("id", "kind", "state", "summary", "dedup_key", "fired_at", "notifications", "acknowledged_at",
                    "acknowledged_by", "snoozed_until", "resolved_at", "resolved_by")


def _json_default(value: Any) -> Any:
    if isinstance(value, (UUID, datetime)):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def incident_view(alert: dict[str, Any]) -> dict[str, Any]:
    details = alert["details"]
    view = {name: alert[name] for name in _INCIDENT_FIELDS}
    view["details"] = orjson.loads(details) if isinstance(details, (str, bytes)) else details
    return view


def webhook_body(delivery_id: UUID, event: str, project: dict[str, Any], rule: dict[str, Any],
                 alert: dict[str, Any]) -> str:
    """The JSON a receiver gets; stored as is, so every attempt sends (and signs) the same bytes."""
    body = {
        "delivery_id": delivery_id,
        "event": event,
        "project": {"id": project["id"], "slug": project["slug"]},
        "rule": {"id": rule["id"], "name": rule["name"], "kind": rule["kind"]},
        "incident": incident_view(alert),
    }
    return orjson.dumps(body, default=_json_default).decode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>` with the rule's secret, as `sha256=<hex>`. The
    timestamp is signed too, so a receiver can refuse an old body replayed to it."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (docs/alerts.md has the same in a few lines)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def retryable(status: int | None) -> bool:
    """None: no answer (timeout, refused connection). 5xx and 429 may pass; other 4xx (and 3xx:
    we do not follow redirects) will not, however often they are sent."""
    return status is None or status >= 500 or status == 429


def retry_delay(attempts: int, base_seconds: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from the base, or
    the receiver's Retry-After when it asked for longer (up to a cap)."""
    delay = base_seconds * 2 ** (attempts - 1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def state_change_record(alert: dict[str, Any], event: str, actor: str | None) -> bytes:
    """One record of the `alerts` topic: what the live feed shows as an `alert` event."""
    view = incident_view(alert)
    record = {"project_id": alert["project_id"], "alert_id": alert["id"], "rule_id": alert["rule_id"],
              "event": event, "actor": actor, "at": alert["updated_at"], **view}
    if "session_id" in view["details"]:  # the live feed's session filter reads it at the top
        record["session_id"] = view["details"]["session_id"]
    return orjson.dumps(record, default=_json_default)
