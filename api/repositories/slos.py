"""SLO definitions in PostgreSQL, per project."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.repositories.audit import Actor, record

_COLUMNS = "id, name, kind, agent_name, target, window_hours, created_at, updated_at"


async def create_slo(pool: asyncpg.Pool, project_id: UUID, slo: dict[str, Any], actor: Actor) -> dict[str, Any]:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"""INSERT INTO slos (project_id, name, kind, agent_name, target, window_hours)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}""",
            project_id, slo["name"], slo["kind"], slo["agent_name"], slo["target"], slo["window_hours"],
        )
        await record(connection, actor, "slo.created", str(row["id"]), project_id, details=slo)
    return dict(row)


async def replace_slo(pool: asyncpg.Pool, project_id: UUID, slo_id: UUID, slo: dict[str, Any],
                      actor: Actor) -> dict[str, Any] | None:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"""UPDATE slos SET name = $3, kind = $4, agent_name = $5, target = $6, window_hours = $7, updated_at = now()
                WHERE project_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
            project_id, slo_id, slo["name"], slo["kind"], slo["agent_name"], slo["target"], slo["window_hours"],
        )
        if row is not None:
            await record(connection, actor, "slo.updated", str(slo_id), project_id, details=slo)
    return dict(row) if row else None


async def get_slo(pool: asyncpg.Pool, project_id: UUID, slo_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM slos WHERE project_id = $1 AND id = $2", project_id, slo_id)
    return dict(row) if row else None


async def delete_slo(pool: asyncpg.Pool, project_id: UUID, slo_id: UUID, actor: Actor) -> bool:
    """Deletes the SLO and (by cascade) the alert rules watching it."""
    async with pool.acquire() as connection, connection.transaction():
        deleted = await connection.fetchval(
            "DELETE FROM slos WHERE project_id = $1 AND id = $2 RETURNING true", project_id, slo_id)
        if deleted:
            await record(connection, actor, "slo.deleted", str(slo_id), project_id)
    return deleted is True


async def list_slos(pool: asyncpg.Pool, project_id: UUID, limit: int,
                    after: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
    """Up to `limit` SLOs in creation order, after the (created_at, id) of `after`."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM slos
            WHERE project_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
            ORDER BY created_at, id LIMIT $4""",
        project_id, after[0] if after else None, after[1] if after else None, limit,
    )
    return [dict(row) for row in rows]
