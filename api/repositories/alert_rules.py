"""Alert rules in PostgreSQL, per project. Only configuration: issue 6 fires them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.repositories.audit import Actor, record

# The secret itself is never read back out; callers see whether there is one.
_COLUMNS = """id, name, kind, tags, slo_id, server_name, budget_usd, window_hours, webhook_url,
              secret IS NOT NULL AS has_secret, enabled, cooldown_seconds, created_at, updated_at"""
_FIELDS = ("name", "kind", "tags", "slo_id", "server_name", "budget_usd", "window_hours", "webhook_url",
           "enabled", "cooldown_seconds")


class UnknownSlo(LookupError):
    """An slo_breached rule names an SLO that is not in the rule's project."""


def _values(rule: dict[str, Any]) -> list[Any]:
    return [rule.get(name) for name in _FIELDS]


def _audited(rule: dict[str, Any]) -> dict[str, Any]:
    # What the log keeps of a rule: everything but the secret, and the ids as text.
    return {name: str(value) if name in ("slo_id", "budget_usd") and value is not None else value
            for name, value in rule.items() if name in _FIELDS}


async def create_rule(pool: asyncpg.Pool, project_id: UUID, rule: dict[str, Any], actor: Actor) -> dict[str, Any]:
    try:
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"""INSERT INTO alert_rules (project_id, {', '.join(_FIELDS)}, secret)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {_COLUMNS}""",
                project_id, *_values(rule), rule.get("secret"),
            )
            await record(connection, actor, "alert_rule.created", str(row["id"]), project_id, details=_audited(rule))
    except asyncpg.ForeignKeyViolationError as error:
        raise UnknownSlo(f"no SLO {rule.get('slo_id')} in this project") from error
    return dict(row)


async def replace_rule(pool: asyncpg.Pool, project_id: UUID, rule_id: UUID, rule: dict[str, Any],
                       secret: str | None, keep_secret: bool, actor: Actor) -> dict[str, Any] | None:
    """Replaces every field; the secret too unless `keep_secret`."""
    try:
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"""UPDATE alert_rules SET name = $3, kind = $4, tags = $5, slo_id = $6, server_name = $7,
                           budget_usd = $8, window_hours = $9, webhook_url = $10, enabled = $11,
                           cooldown_seconds = $12, secret = CASE WHEN $13 THEN secret ELSE $14 END,
                           updated_at = now()
                    WHERE project_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
                project_id, rule_id, *_values(rule), keep_secret, secret,
            )
            if row is not None:
                await record(connection, actor, "alert_rule.updated", str(rule_id), project_id,
                             details={**_audited(rule), "secret": "kept" if keep_secret else "replaced"})
    except asyncpg.ForeignKeyViolationError as error:
        raise UnknownSlo(f"no SLO {rule.get('slo_id')} in this project") from error
    return dict(row) if row else None


async def get_rule(pool: asyncpg.Pool, project_id: UUID, rule_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM alert_rules WHERE project_id = $1 AND id = $2", project_id, rule_id)
    return dict(row) if row else None


async def delete_rule(pool: asyncpg.Pool, project_id: UUID, rule_id: UUID, actor: Actor) -> bool:
    async with pool.acquire() as connection, connection.transaction():
        deleted = await connection.fetchval(
            "DELETE FROM alert_rules WHERE project_id = $1 AND id = $2 RETURNING true", project_id, rule_id)
        if deleted:
            await record(connection, actor, "alert_rule.deleted", str(rule_id), project_id)
    return deleted is True


async def list_rules(pool: asyncpg.Pool, project_id: UUID, limit: int,
                     after: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
    """Up to `limit` rules in creation order, after the (created_at, id) of `after`."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM alert_rules
            WHERE project_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
            ORDER BY created_at, id LIMIT $4""",
        project_id, after[0] if after else None, after[1] if after else None, limit,
    )
    return [dict(row) for row in rows]
