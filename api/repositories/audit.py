"""The audit log: who did what to which thing, from where. Append-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Actor:
    """Whoever a write is done by: `user:<email>`, `key:<prefix>` or `cli`, and their address."""

    name: str
    client_ip: str | None = None


async def record(
    connection: asyncpg.Connection | asyncpg.Pool,
    actor: Actor,
    action: str,
    target: str | None = None,
    project_id: UUID | None = None,
    user_id: UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Writes one event; pass the connection of the write's transaction so both commit together."""
    await connection.execute(
        """INSERT INTO audit_logs (actor, action, target, project_id, user_id, client_ip, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)""",
        actor.name, action, target, project_id, user_id, actor.client_ip, json.dumps(details or {}),
    )


async def list_events(
    pool: asyncpg.Pool, project_id: UUID, limit: int, before_id: int | None, action: str | None
) -> list[dict[str, Any]]:
    """Newest first: the project's events, and the logins of its current members."""
    rows = await pool.fetch(
        """SELECT id, at, actor, action, target, project_id, user_id, client_ip, details
           FROM audit_logs
           WHERE (project_id = $1
                  OR (project_id IS NULL
                      AND user_id IN (SELECT user_id FROM project_members WHERE project_id = $1)))
             AND ($2::bigint IS NULL OR id < $2)
             AND ($3::text IS NULL OR action = $3)
           ORDER BY id DESC
           LIMIT $4""",
        project_id, before_id, action, limit,
    )
    return [{**dict(row), "details": json.loads(row["details"])} for row in rows]
