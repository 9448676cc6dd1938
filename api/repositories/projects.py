"""Projects and API keys in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from api.keys import generate_key, key_prefix, matches


@dataclass(frozen=True)
class Project:
    id: UUID
    slug: str
    name: str


async def ensure_project(pool: asyncpg.Pool, slug: str, name: str | None = None) -> Project:
    """Returns the project with this slug, creating it if it does not exist."""
    row = await pool.fetchrow(
        """INSERT INTO projects (slug, name) VALUES ($1, $2)
           ON CONFLICT (slug) DO UPDATE SET slug = EXCLUDED.slug
           RETURNING id, slug, name""",
        slug, name or slug,
    )
    return Project(**dict(row))


@dataclass(frozen=True)
class KeyHolder:
    """What a live key grants: its project and the role it acts with there."""
    project: Project
    role: str


async def create_api_key(pool: asyncpg.Pool, project_id: UUID, name: str, role: str = "admin") -> str:
    """Stores a new key's hash and returns its plaintext, which is never stored."""
    key = generate_key()
    await pool.execute(
        "INSERT INTO api_keys (project_id, name, prefix, key_hash, role) VALUES ($1, $2, $3, $4, $5)",
        project_id, name, key.prefix, key.key_hash, role,
    )
    return key.plaintext


async def project_for_key(pool: asyncpg.Pool, plaintext: str) -> Project | None:
    """The project a live key belongs to, or None for an unknown, wrong or revoked key."""
    holder = await holder_of_key(pool, plaintext)
    return holder.project if holder else None


async def holder_of_key(pool: asyncpg.Pool, plaintext: str) -> KeyHolder | None:
    """The project and role of a live key, or None for an unknown, wrong or revoked key."""
    prefix = key_prefix(plaintext)
    if prefix is None:
        return None
    row = await pool.fetchrow(
        """SELECT k.id AS key_id, k.key_hash, k.role, p.id, p.slug, p.name
           FROM api_keys k JOIN projects p ON p.id = k.project_id
           WHERE k.prefix = $1 AND k.revoked_at IS NULL""",
        prefix,
    )
    if row is None or not matches(plaintext, row["key_hash"]):
        return None
    # Throttled so that a busy producer does not turn every request into a write.
    await pool.execute(
        """UPDATE api_keys SET last_used_at = now()
           WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        row["key_id"],
    )
    return KeyHolder(Project(row["id"], row["slug"], row["name"]), row["role"])
