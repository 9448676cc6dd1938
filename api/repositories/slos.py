"""SLO definitions in PostgreSQL, per project."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.keyset import BadCursor, decode_cursor, encode_cursor

_COLUMNS = "id, name, kind, agent_name, target, window_hours, created_at, updated_at"


async def create_slo(pool: asyncpg.Pool, project_id: UUID, slo: dict[str, Any]) -> dict[str, Any]:
    row = await pool.fetchrow(
        f"""INSERT INTO slos (project_id, name, kind, agent_name, target, window_hours)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}""",
        project_id, slo["name"], slo["kind"], slo["agent_name"], slo["target"], slo["window_hours"],
    )
    return dict(row)


async def replace_slo(pool: asyncpg.Pool, project_id: UUID, slo_id: UUID, slo: dict[str, Any]) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"""UPDATE slos SET name = $3, kind = $4, agent_name = $5, target = $6, window_hours = $7, updated_at = now()
            WHERE project_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
        project_id, slo_id, slo["name"], slo["kind"], slo["agent_name"], slo["target"], slo["window_hours"],
    )
    return dict(row) if row else None


async def get_slo(pool: asyncpg.Pool, project_id: UUID, slo_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM slos WHERE project_id = $1 AND id = $2", project_id, slo_id)
    return dict(row) if row else None


async def delete_slo(pool: asyncpg.Pool, project_id: UUID, slo_id: UUID) -> bool:
    return await pool.fetchval("DELETE FROM slos WHERE project_id = $1 AND id = $2 RETURNING true", project_id, slo_id) is True


async def list_slos(pool: asyncpg.Pool, project_id: UUID, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page in creation order, and the cursor of the next page (None on the last)."""
    after_at, after_id = datetime.min, UUID(int=0)
    if cursor:
        key = decode_cursor(cursor, 2)
        try:
            after_at, after_id = datetime.fromisoformat(key[0]), UUID(key[1])
        except (TypeError, ValueError) as error:
            raise BadCursor("invalid cursor: pass back the next_cursor of a previous page") from error
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM slos
            WHERE project_id = $1 AND ($2::boolean OR (created_at, id) > ($3, $4))
            ORDER BY created_at, id LIMIT $5""",
        project_id, cursor is None, after_at if cursor else None, after_id, limit + 1,
    )
    page = [dict(row) for row in rows[:limit]]
    more = len(rows) > limit
    return page, encode_cursor(page[-1]["created_at"].isoformat(), page[-1]["id"]) if more else None
