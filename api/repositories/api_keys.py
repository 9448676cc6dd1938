"""Managing a project's API keys: create (plaintext shown once), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.errors import NotFound
from api.keys import generate_key
from api.repositories.audit import Actor, record
from api.repositories.projects import Project

_COLUMNS = "id, name, prefix, role, created_at, last_used_at, revoked_at"


async def create_key(pool: asyncpg.Pool, project: Project, name: str, role: str, actor: Actor) -> tuple[dict[str, Any], str]:
    """The key's row and its plaintext, which is not stored and cannot be shown again."""
    key = generate_key()
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"""INSERT INTO api_keys (project_id, name, prefix, key_hash, role) VALUES ($1, $2, $3, $4, $5)
                RETURNING {_COLUMNS}""",
            project.id, name, key.prefix, key.key_hash, role,
        )
        await record(connection, actor, "key.created", f"key:{key.prefix}", project.id,
                     details={"name": name, "role": role})
    return dict(row), key.plaintext


async def list_keys(
    pool: asyncpg.Pool, project_id: UUID, limit: int, before: tuple[datetime, UUID] | None = None
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM api_keys
            WHERE project_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $4""",
        project_id, before[0] if before else None, before[1] if before else None, limit,
    )
    return [dict(row) for row in rows]


async def revoke_key(pool: asyncpg.Pool, project: Project, key_id: UUID, actor: Actor) -> dict[str, Any]:
    """Revokes a key of this project (a second revoke changes nothing) and returns its row."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 AND project_id = $2 FOR UPDATE", key_id, project.id
        )
        if row is None:
            raise NotFound(f"no API key {key_id} in {project.slug}")
        if row["revoked_at"] is None:
            row = await connection.fetchrow(
                f"UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING {_COLUMNS}", key_id
            )
            await record(connection, actor, "key.revoked", f"key:{row['prefix']}", project.id,
                         details={"name": row["name"]})
    return dict(row)
