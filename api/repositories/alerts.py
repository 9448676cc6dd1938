"""Alert incidents in PostgreSQL: opening (deduplicated), resolving, people's transitions, repeats.

Every change that should reach a webhook inserts its delivery row in the same transaction, so
an incident is never recorded without the notification it owes, nor notified twice.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.alerts.events import Opening
from api.alerts.payload import webhook_body
from api.cursor import decode_cursor, page

STATES = ("firing", "acknowledged", "snoozed", "resolved")
_RULE_COLUMNS = "r.id, r.project_id, r.name, r.kind, r.tags, r.slo_id, r.server_name, r.budget_usd, r.window_hours, r.cooldown_seconds"


class NotOpen(Exception):
    """The incident is resolved: it can no longer be acknowledged, snoozed or resolved."""


def _row(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    found = dict(row)
    found["details"] = json.loads(found["details"])
    return found


async def rules_of_kind(pool: asyncpg.Pool, project_id: UUID | None, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Enabled rules of these kinds, in one project or (None) all, with the project's slug."""
    rows = await pool.fetch(
        f"""SELECT {_RULE_COLUMNS}, p.slug AS project_slug FROM alert_rules r JOIN projects p ON p.id = r.project_id
            WHERE r.enabled AND r.kind = ANY($2::text[]) AND ($1::uuid IS NULL OR r.project_id = $1)
            ORDER BY r.created_at, r.id""",
        project_id, list(kinds),
    )
    return [dict(row) for row in rows]


async def _queue_delivery(connection: asyncpg.Connection, alert: dict[str, Any], event: str) -> None:
    rule = await connection.fetchrow(
        """SELECT r.id, r.name, r.kind, p.id AS project_id, p.slug FROM alert_rules r JOIN projects p ON p.id = r.project_id
           WHERE r.id = $1""", alert["rule_id"])
    if rule is None:  # the rule was deleted meanwhile: its incidents go with it
        return
    delivery_id = uuid.uuid4()
    body = webhook_body(delivery_id, event, {"id": rule["project_id"], "slug": rule["slug"]}, dict(rule), alert)
    await connection.execute(
        """INSERT INTO alert_deliveries (id, alert_id, rule_id, project_id, event, body) VALUES ($1, $2, $3, $4, $5, $6)""",
        delivery_id, alert["id"], alert["rule_id"], alert["project_id"], event, body,
    )


async def open_incident(pool: asyncpg.Pool, rule: dict[str, Any], opening: Opening,
                        repeat_seconds: float) -> dict[str, Any] | None:
    """Claims the incident; None when it is already open (or this one-off event already opened
    one). It is notified unless the rule notified another within its cooldown or is snoozed."""
    async with pool.acquire() as connection, connection.transaction():
        # Serialises openings of one rule across engines, so that the cooldown check holds.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", str(rule["id"]))
        row = _row(await connection.fetchrow(
            """INSERT INTO alerts (project_id, rule_id, kind, dedup_key, source_event, state, summary, details,
                                   notified, notifications, next_notify_at, resolved_at, resolved_by)
               SELECT $1, $2, $3, $4, $5, CASE WHEN $8::bool THEN 'resolved' ELSE 'firing' END, $6, $7::jsonb,
                      c.cool AND c.rule_snoozed_until IS NULL, (c.cool AND c.rule_snoozed_until IS NULL)::int,
                      CASE WHEN $8::bool OR NOT c.cool THEN NULL
                           -- opened while its rule sleeps: notified when the rule wakes
                           WHEN c.rule_snoozed_until IS NOT NULL THEN c.rule_snoozed_until
                           WHEN $9::float8 > 0 THEN now() + make_interval(secs => $9::float8) END,
                      CASE WHEN $8 THEN now() END, CASE WHEN $8 THEN 'auto' END
               FROM (SELECT NOT EXISTS (SELECT 1 FROM alerts WHERE rule_id = $2 AND notified
                                        AND fired_at > now() - make_interval(secs => $10::float8)) AS cool,
                            (SELECT until FROM alert_rule_snoozes WHERE rule_id = $2 AND until > now()) AS rule_snoozed_until) c
               ON CONFLICT DO NOTHING
               RETURNING *""",
            rule["project_id"], rule["id"], rule["kind"], opening.dedup_key, opening.source_event, opening.summary,
            json.dumps(opening.details), opening.born_resolved, float(repeat_seconds), float(rule["cooldown_seconds"]),
        ))
        if row is not None and row["notified"]:
            await _queue_delivery(connection, row, "fired")
        return row


async def resolve_condition(pool: asyncpg.Pool, rule_id: UUID, dedup_key: str, reason: str) -> dict[str, Any] | None:
    """The condition cleared: resolves the open incident, if any, and owes its receiver a `resolved`."""
    async with pool.acquire() as connection, connection.transaction():
        row = _row(await connection.fetchrow(
            """UPDATE alerts SET state = 'resolved', resolved_at = now(), resolved_by = 'auto', next_notify_at = NULL,
                      snoozed_until = NULL, details = details || jsonb_build_object('resolution', $3::text),
                      updated_at = now()
               WHERE rule_id = $1 AND dedup_key = $2 AND state <> 'resolved' RETURNING *""",
            rule_id, dedup_key, reason,
        ))
        if row is not None and row["notified"]:
            await _queue_delivery(connection, row, "resolved")
        return row


async def _transition(pool: asyncpg.Pool, project_id: UUID, alert_id: UUID, sql: str, *args: Any,
                      notify: str | None = None, audit=None) -> dict[str, Any] | None:
    """Applies a person's transition; None: no such incident in the project; NotOpen: resolved."""
    async with pool.acquire() as connection, connection.transaction():
        row = _row(await connection.fetchrow(sql, project_id, alert_id, *args))
        if row is None:
            state = await connection.fetchval("SELECT state FROM alerts WHERE project_id = $1 AND id = $2",
                                              project_id, alert_id)
            if state is None:
                return None
            raise NotOpen(f"alert {alert_id} is {state}")
        if notify and row["notified"]:
            await _queue_delivery(connection, row, notify)
        if audit is not None:
            await audit(connection, row)
        return row


async def acknowledge(pool: asyncpg.Pool, project_id: UUID, alert_id: UUID, actor: str, audit=None) -> dict[str, Any] | None:
    return await _transition(pool, project_id, alert_id,
        """UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $3,
                  next_notify_at = NULL, snoozed_until = NULL, updated_at = now()
           WHERE project_id = $1 AND id = $2 AND state <> 'resolved' RETURNING *""", actor, audit=audit)


async def snooze(pool: asyncpg.Pool, project_id: UUID, alert_id: UUID, until: datetime, actor: str,
                 audit=None) -> dict[str, Any] | None:
    return await _transition(pool, project_id, alert_id,
        """UPDATE alerts SET state = 'snoozed', snoozed_until = $3, snoozed_by = $4, next_notify_at = $3,
                  updated_at = now()
           WHERE project_id = $1 AND id = $2 AND state <> 'resolved' RETURNING *""", until, actor, audit=audit)


async def resolve(pool: asyncpg.Pool, project_id: UUID, alert_id: UUID, actor: str, audit=None) -> dict[str, Any] | None:
    return await _transition(pool, project_id, alert_id,
        """UPDATE alerts SET state = 'resolved', resolved_at = now(), resolved_by = $3, next_notify_at = NULL,
                  snoozed_until = NULL, updated_at = now()
           WHERE project_id = $1 AND id = $2 AND state <> 'resolved' RETURNING *""", actor,
        notify="resolved", audit=audit)


async def claim_due_repeats(pool: asyncpg.Pool, repeat_seconds: float, limit: int = 100) -> list[tuple[dict[str, Any], str]]:
    """Firing incidents whose repeat is due, snoozed ones whose snooze ended, and ones opened while
    their rule was snoozed once it is not: each is firing and owes a webhook. Returns (incident,
    what it was: firing, snoozed, or new for one never sent)."""
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(
            """WITH due AS (
                   SELECT a.id, a.state AS was, a.notified AS was_notified FROM alerts a
                   WHERE a.next_notify_at <= now() AND a.state IN ('firing', 'snoozed')
                     AND EXISTS (SELECT 1 FROM alert_rules r WHERE r.id = a.rule_id AND r.enabled)
                     AND NOT EXISTS (SELECT 1 FROM alert_rule_snoozes z WHERE z.rule_id = a.rule_id AND z.until > now())
                   ORDER BY a.next_notify_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE alerts a SET state = 'firing', snoozed_until = NULL, notified = true,
                      notifications = a.notifications + 1,
                      next_notify_at = CASE WHEN $1::float8 > 0 THEN now() + make_interval(secs => $1::float8) END, updated_at = now()
               FROM due WHERE a.id = due.id RETURNING a.*, due.was, due.was_notified""",
            float(repeat_seconds), limit,
        )
        claimed = []
        for record in rows:
            row = _row(record)
            was, was_notified = row.pop("was"), row.pop("was_notified")
            # Never sent before (its rule was snoozed when it opened): this is its first call.
            event = "repeated" if was_notified else "fired"
            await _queue_delivery(connection, row, event)
            claimed.append((row, was if was_notified else "new"))
        return claimed


async def remember_server_status(pool: asyncpg.Pool, project_id: UUID, server_name: str, status: str,
                                 checked_at: datetime) -> tuple[bool, str | None]:
    """Stores the newest status seen for a server: (newer than the stored one, the previous status).
    A check no newer than the stored one (a redelivery, an overtaken probe) is not newer."""
    async with pool.acquire() as connection, connection.transaction():
        previous = await connection.fetchrow(
            "SELECT status, checked_at FROM alert_server_states WHERE project_id = $1 AND server_name = $2 FOR UPDATE",
            project_id, server_name)
        if previous is not None and previous["checked_at"] >= checked_at:
            return False, previous["status"]
        stored = await connection.fetchval(
            """INSERT INTO alert_server_states (project_id, server_name, status, checked_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (project_id, server_name) DO UPDATE SET status = EXCLUDED.status, checked_at = EXCLUDED.checked_at
               WHERE alert_server_states.checked_at < EXCLUDED.checked_at RETURNING true""",
            project_id, server_name, status, checked_at)
        return stored is True, previous["status"] if previous is not None else None


_LIST_COLUMNS = "a.*, r.name AS rule_name"


async def get_alert(pool: asyncpg.Pool, project_id: UUID, alert_id: UUID) -> dict[str, Any] | None:
    return _row(await pool.fetchrow(
        f"SELECT {_LIST_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE a.project_id = $1 AND a.id = $2",
        project_id, alert_id))


async def list_alerts(pool: asyncpg.Pool, project_id: UUID, states: list[str] | None, rule_id: UUID | None,
                      limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first."""
    before = decode_cursor(cursor, datetime, UUID) if cursor else None
    rows = await pool.fetch(
        f"""SELECT {_LIST_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
            WHERE a.project_id = $1 AND ($2::text[] IS NULL OR a.state = ANY($2)) AND ($3::uuid IS NULL OR a.rule_id = $3)
              AND ($4::timestamptz IS NULL OR (a.fired_at, a.id) < ($4, $5))
            ORDER BY a.fired_at DESC, a.id DESC LIMIT $6""",
        project_id, states, rule_id, before[0] if before else None, before[1] if before else None, limit + 1,
    )
    return page([_row(row) for row in rows], limit, lambda row: (row["fired_at"], row["id"]))


async def snooze_rule(pool: asyncpg.Pool, project_id: UUID, rule_id: UUID, until: datetime, actor: str,
                      audit=None) -> dict[str, Any] | None:
    """None: no such rule in the project."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            """INSERT INTO alert_rule_snoozes (rule_id, project_id, until, snoozed_by)
               SELECT id, project_id, $3, $4 FROM alert_rules WHERE project_id = $1 AND id = $2
               ON CONFLICT (rule_id) DO UPDATE SET until = EXCLUDED.until, snoozed_by = EXCLUDED.snoozed_by,
                                                   created_at = now()
               RETURNING rule_id, until, snoozed_by""", project_id, rule_id, until, actor)
        if row is not None and audit is not None:
            await audit(connection, dict(row))
        return dict(row) if row else None


async def unsnooze_rule(pool: asyncpg.Pool, project_id: UUID, rule_id: UUID, audit=None) -> bool:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "DELETE FROM alert_rule_snoozes WHERE project_id = $1 AND rule_id = $2 RETURNING rule_id, until, snoozed_by",
            project_id, rule_id)
        if row is not None:  # what waited for the rule to wake is due now
            await connection.execute(
                """UPDATE alerts SET next_notify_at = now() WHERE rule_id = $1 AND state = 'firing'
                   AND next_notify_at > now()""", rule_id)
        if row is not None and audit is not None:
            await audit(connection, dict(row))
        return row is not None
