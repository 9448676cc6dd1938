"""Registered MCP servers (PostgreSQL `mcp_servers`), per project."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

_FIELDS = """id, name, transport, command, args, env, url, headers, interval_seconds, timeout_seconds,
    degraded_after_ms, enabled, created_at, updated_at"""
_JSON = ("args", "env", "headers")
# What a caller may set; the router validates the values.
EDITABLE = ("transport", "command", "args", "env", "url", "headers", "interval_seconds", "timeout_seconds",
            "degraded_after_ms", "enabled")


class DuplicateServer(Exception):
    """The project already has a server of this name."""


def _server(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON:
        out[name] = json.loads(out[name])
    return out


def _encoded(name: str, value: Any) -> Any:
    return json.dumps(value) if name in _JSON else value


async def create_server(pool: asyncpg.Pool, project_id: UUID, fields: dict[str, Any]) -> dict[str, Any]:
    names = ["name", *EDITABLE]
    try:
        row = await pool.fetchrow(
            f"""INSERT INTO mcp_servers (project_id, {', '.join(names)})
                VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(names)))})
                RETURNING {_FIELDS}""",
            project_id, *(_encoded(name, fields[name]) for name in names),
        )
    except asyncpg.UniqueViolationError as error:
        raise DuplicateServer(fields["name"]) from error
    return _server(row)


async def list_servers(pool: asyncpg.Pool, project_id: UUID, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Servers by name, after the name `after`; `limit` rows at most."""
    rows = await pool.fetch(
        f"""SELECT {_FIELDS} FROM mcp_servers
            WHERE project_id = $1 AND ($2::text IS NULL OR name > $2)
            ORDER BY name LIMIT $3""",
        project_id, after, limit,
    )
    return [_server(row) for row in rows]


async def get_server(pool: asyncpg.Pool, project_id: UUID, name: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_FIELDS} FROM mcp_servers WHERE project_id = $1 AND name = $2",
                              project_id, name)
    return _server(row) if row else None


async def update_server(pool: asyncpg.Pool, project_id: UUID, name: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Replaces the editable fields with `fields` (the router merged and validated them)."""
    assignments = ", ".join(f"{column} = ${i + 3}" for i, column in enumerate(EDITABLE))
    row = await pool.fetchrow(
        f"""UPDATE mcp_servers SET {assignments}, updated_at = now()
            WHERE project_id = $1 AND name = $2 RETURNING {_FIELDS}""",
        project_id, name, *(_encoded(column, fields[column]) for column in EDITABLE),
    )
    return _server(row) if row else None


async def delete_server(pool: asyncpg.Pool, project_id: UUID, name: str) -> bool:
    status = await pool.execute("DELETE FROM mcp_servers WHERE project_id = $1 AND name = $2", project_id, name)
    return status == "DELETE 1"
