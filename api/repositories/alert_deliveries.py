"""Webhook deliveries in PostgreSQL: claimed under a lease, so any engine may send and a crash
mid-send is retried once the lease runs out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class DueDelivery:
    id: UUID
    alert_id: UUID
    event: str
    body: str
    attempts: int  # including the one about to be made
    webhook_url: str
    secret: str | None


async def claim_due(pool: asyncpg.Pool, lease_seconds: float, limit: int = 20) -> list[DueDelivery]:
    """Pending deliveries whose time has come, each counted as attempted and hidden from other
    engines for `lease_seconds`. The URL and secret are the rule's current ones: fixing a
    rule's URL redirects its pending retries."""
    rows = await pool.fetch(
        """WITH due AS (SELECT id FROM alert_deliveries WHERE state = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE alert_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $1::float8)
           FROM due, alert_rules r WHERE d.id = due.id AND r.id = d.rule_id
           RETURNING d.id, d.alert_id, d.event, d.body, d.attempts, r.webhook_url, r.secret""",
        float(lease_seconds), limit,
    )
    return [DueDelivery(**dict(row)) for row in rows]


async def delivered(pool: asyncpg.Pool, delivery_id: UUID, status: int) -> None:
    await pool.execute(
        """UPDATE alert_deliveries SET state = 'delivered', delivered_at = now(), last_status = $2, last_error = NULL
           WHERE id = $1""", delivery_id, status)


async def failed_attempt(pool: asyncpg.Pool, delivery_id: UUID, status: int | None, error: str,
                         retry_in: float | None) -> None:
    """Records a failed attempt: retried in `retry_in` seconds, or (None) given up."""
    await pool.execute(
        """UPDATE alert_deliveries SET last_status = $2, last_error = $3,
                  state = CASE WHEN $4::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                  next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at
                                         ELSE now() + make_interval(secs => $4::float8) END
           WHERE id = $1""", delivery_id, status, error[:1000], retry_in)


async def deliveries_of(pool: asyncpg.Pool, alert_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT id, event, state, attempts, last_status, last_error, created_at, delivered_at, next_attempt_at
           FROM alert_deliveries WHERE alert_id = $1 ORDER BY created_at, id""", alert_id)
    return [dict(row) for row in rows]
