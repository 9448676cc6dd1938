"""Project members and their roles; a project always keeps at least one admin."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from api.errors import Conflict, NotFound
from api.repositories.audit import Actor, record
from api.repositories.projects import Project, project_by_ref


async def membership(pool: asyncpg.Pool, user_id: UUID, project_ref: str) -> tuple[Project, str] | None:
    """The project a user names and their role in it, or None when it does not exist or they
    are not a member (the two look the same to the caller)."""
    project = await project_by_ref(pool, project_ref)
    if project is None:
        return None
    role = await pool.fetchval(
        "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2", project.id, user_id
    )
    return (project, role) if role else None


async def projects_of_user(
    pool: asyncpg.Pool, user_id: UUID, limit: int, after_slug: str | None = None
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT p.id, p.slug, p.name, p.created_at, m.role
           FROM project_members m JOIN projects p ON p.id = m.project_id
           WHERE m.user_id = $1 AND ($2::text IS NULL OR p.slug > $2)
           ORDER BY p.slug LIMIT $3""",
        user_id, after_slug, limit,
    )
    return [dict(row) for row in rows]


async def add_member(connection: asyncpg.Connection, project: Project, user_id: UUID, email: str, role: str,
                     actor: Actor, how: str) -> None:
    """Part of a caller's transaction; someone who is already a member is a Conflict."""
    added = await connection.fetchval(
        """INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING user_id""",
        project.id, user_id, role,
    )
    if added is None:
        raise Conflict(f"{email} is already a member of {project.slug}")
    await record(connection, actor, "member.added", f"user:{email}", project.id, user_id,
                 details={"role": role, "how": how})


async def list_members(
    pool: asyncpg.Pool, project_id: UUID, limit: int, after_email: str | None = None
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT u.id AS user_id, u.email, m.role, m.created_at AS member_since
           FROM project_members m JOIN users u ON u.id = m.user_id
           WHERE m.project_id = $1 AND ($2::text IS NULL OR u.email > $2)
           ORDER BY u.email LIMIT $3""",
        project_id, after_email, limit,
    )
    return [dict(row) for row in rows]


async def _locked_member(connection: asyncpg.Connection, project: Project, user_id: UUID) -> asyncpg.Record:
    # Locking every admin row serialises concurrent demotions, so two admins demoting each other
    # at once cannot leave the project with none.
    await connection.execute(
        "SELECT 1 FROM project_members WHERE project_id = $1 AND role = 'admin' FOR UPDATE", project.id
    )
    row = await connection.fetchrow(
        """SELECT m.role, u.email, m.created_at,
                  (SELECT count(*) FROM project_members WHERE project_id = $1 AND role = 'admin') AS admins
           FROM project_members m JOIN users u ON u.id = m.user_id
           WHERE m.project_id = $1 AND m.user_id = $2 FOR UPDATE OF m""",
        project.id, user_id,
    )
    if row is None:
        raise NotFound(f"user {user_id} is not a member of {project.slug}")
    return row


def _keeps_an_admin(row: asyncpg.Record, project: Project) -> None:
    if row["role"] == "admin" and row["admins"] <= 1:
        raise Conflict(f"{row['email']} is the last admin of {project.slug}; make someone else admin first")


async def change_role(pool: asyncpg.Pool, project: Project, user_id: UUID, role: str, actor: Actor) -> dict[str, Any]:
    async with pool.acquire() as connection, connection.transaction():
        row = await _locked_member(connection, project, user_id)
        if role != "admin":
            _keeps_an_admin(row, project)
        await connection.execute(
            "UPDATE project_members SET role = $3 WHERE project_id = $1 AND user_id = $2", project.id, user_id, role
        )
        if row["role"] != role:
            await record(connection, actor, "member.role_changed", f"user:{row['email']}", project.id, user_id,
                         details={"from": row["role"], "to": role})
    return {"user_id": user_id, "email": row["email"], "role": role, "member_since": row["created_at"]}


async def remove_member(pool: asyncpg.Pool, project: Project, user_id: UUID, actor: Actor) -> None:
    async with pool.acquire() as connection, connection.transaction():
        row = await _locked_member(connection, project, user_id)
        _keeps_an_admin(row, project)
        await connection.execute("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2",
                                 project.id, user_id)
        await record(connection, actor, "member.removed", f"user:{row['email']}", project.id, user_id,
                     details={"role": row["role"]})

