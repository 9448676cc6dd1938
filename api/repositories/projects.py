"""Projects and API keys in PostgreSQL: resolving a key, creating, renaming and deleting projects."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from api.errors import Conflict, NotFound
from api.keys import generate_key, key_prefix, matches
from api.repositories.audit import Actor, record


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


async def create_api_key(pool: asyncpg.Pool, project_id: UUID, name: str, role: str = "admin",
                         actor: Actor = Actor("cli")) -> str:
    """Stores a new key's hash and returns its plaintext, which is never stored."""
    key = generate_key()
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO api_keys (project_id, name, prefix, key_hash, role) VALUES ($1, $2, $3, $4, $5)",
            project_id, name, key.prefix, key.key_hash, role,
        )
        await record(connection, actor, "key.created", f"key:{key.prefix}", project_id,
                     details={"name": name, "role": role})
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


def _as_uuid(ref: str) -> UUID | None:
    try:
        return UUID(ref)
    except ValueError:
        return None


async def project_by_ref(connection: asyncpg.Connection | asyncpg.Pool, ref: str) -> Project | None:
    """A project named by its id or its slug (what X-Project and /api/projects/{project} carry)."""
    project_id = _as_uuid(ref)
    if project_id is not None:
        row = await connection.fetchrow("SELECT id, slug, name FROM projects WHERE id = $1", project_id)
    else:
        row = await connection.fetchrow("SELECT id, slug, name FROM projects WHERE slug = $1", ref)
    return Project(**dict(row)) if row else None


async def create_project(pool: asyncpg.Pool, slug: str, name: str, creator: UUID, actor: Actor) -> Project:
    """A new project whose creator is its first admin."""
    async with pool.acquire() as connection, connection.transaction():
        try:
            row = await connection.fetchrow(
                "INSERT INTO projects (slug, name) VALUES ($1, $2) RETURNING id, slug, name", slug, name
            )
        except asyncpg.UniqueViolationError as error:
            raise Conflict(f"a project with the slug {slug} already exists") from error
        project = Project(**dict(row))
        await connection.execute(
            "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'admin')", project.id, creator
        )
        await record(connection, actor, "project.created", f"project:{slug}", project.id, details={"name": name})
    return project


async def update_project(
    pool: asyncpg.Pool, project: Project, actor: Actor, name: str | None = None, slug: str | None = None
) -> Project:
    """Renames a project; a new slug changes what X-Project must say, its id never changes."""
    async with pool.acquire() as connection, connection.transaction():
        try:
            row = await connection.fetchrow(
                """UPDATE projects SET name = coalesce($2, name), slug = coalesce($3, slug)
                   WHERE id = $1 RETURNING id, slug, name""",
                project.id, name, slug,
            )
        except asyncpg.UniqueViolationError as error:
            raise Conflict(f"a project with the slug {slug} already exists") from error
        if row is None:
            raise NotFound(f"no project {project.slug}")
        updated = Project(**dict(row))
        changes = {field: {"from": getattr(project, field), "to": getattr(updated, field)}
                   for field in ("name", "slug") if getattr(project, field) != getattr(updated, field)}
        await record(connection, actor, "project.updated", f"project:{updated.slug}", project.id, details=changes)
    return updated


async def delete_project(pool: asyncpg.Pool, project: Project, actor: Actor) -> None:
    """Deletes the project with its members, keys and invites (the spans in ClickHouse stay)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("DELETE FROM projects WHERE id = $1", project.id)
        await record(connection, actor, "project.deleted", f"project:{project.slug}", project.id,
                     details={"name": project.name})
