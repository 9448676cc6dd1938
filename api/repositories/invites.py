"""Invites into a project: an admin names an email and a role; the token joins once."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.errors import BadRequest, Conflict, Gone, NotFound
from api.repositories.audit import Actor, record
from api.repositories.members import add_member
from api.repositories.projects import Project
from api.repositories.users import User, insert_user, new_password_hash
from api.tokens import INVITE_PREFIX, hash_token, new_token

_COLUMNS = """id, email, role, created_by, created_at, expires_at, accepted_at, revoked_at,
              CASE WHEN accepted_at IS NOT NULL THEN 'accepted' WHEN revoked_at IS NOT NULL THEN 'revoked'
                   WHEN expires_at <= now() THEN 'expired' ELSE 'pending' END AS state"""


async def create_invite(
    pool: asyncpg.Pool, project: Project, email: str, role: str, hours: float, actor: Actor
) -> tuple[dict[str, Any], str]:
    """The invite and its token, which is not stored and cannot be shown again."""
    token, token_hash = new_token(INVITE_PREFIX)
    async with pool.acquire() as connection, connection.transaction():
        member = await connection.fetchval(
            """SELECT 1 FROM project_members m JOIN users u ON u.id = m.user_id
               WHERE m.project_id = $1 AND u.email = $2""",
            project.id, email,
        )
        if member:
            raise Conflict(f"{email} is already a member of {project.slug}; change their role instead")
        row = await connection.fetchrow(
            f"""INSERT INTO project_invites (project_id, email, role, token_hash, created_by, expires_at)
                VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 hour') RETURNING {_COLUMNS}""",
            project.id, email, role, token_hash, actor.name, hours,
        )
        await record(connection, actor, "invite.created", f"invite:{row['id']}", project.id,
                     details={"email": email, "role": role, "expires_at": row["expires_at"].isoformat()})
    return dict(row), token


async def list_invites(
    pool: asyncpg.Pool, project_id: UUID, limit: int, before: tuple[datetime, UUID] | None = None
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM project_invites
            WHERE project_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $4""",
        project_id, before[0] if before else None, before[1] if before else None, limit,
    )
    return [dict(row) for row in rows]


async def revoke_invite(pool: asyncpg.Pool, project: Project, invite_id: UUID, actor: Actor) -> None:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "SELECT email, accepted_at, revoked_at FROM project_invites WHERE id = $1 AND project_id = $2 FOR UPDATE",
            invite_id, project.id,
        )
        if row is None:
            raise NotFound(f"no invite {invite_id} in {project.slug}")
        if row["accepted_at"] is not None:
            raise Gone(f"invite {invite_id} was already accepted; remove the member instead")
        if row["revoked_at"] is None:
            await connection.execute("UPDATE project_invites SET revoked_at = now() WHERE id = $1", invite_id)
            await record(connection, actor, "invite.revoked", f"invite:{invite_id}", project.id,
                         details={"email": row["email"]})


async def _open_invite(connection: asyncpg.Connection | asyncpg.Pool, token: str, lock: bool) -> asyncpg.Record:
    row = await connection.fetchrow(
        f"""SELECT i.id, i.email, i.role, i.accepted_at, i.revoked_at, i.expires_at <= now() AS expired,
                   p.id AS project_id, p.slug, p.name
            FROM project_invites i JOIN projects p ON p.id = i.project_id
            WHERE i.token_hash = $1 {"FOR UPDATE OF i" if lock else ""}""",
        hash_token(token),
    )
    if row is None:
        raise NotFound("unknown invite token")
    if row["accepted_at"] is not None:
        raise Gone("this invite was already accepted")
    if row["revoked_at"] is not None:
        raise Gone("this invite was revoked; ask a project admin for a new one")
    if row["expired"]:
        raise Gone("this invite has expired; ask a project admin for a new one")
    return row


async def invited_email(pool: asyncpg.Pool, token: str) -> str:
    """The email an open invite is for; raises when the token cannot be used."""
    return (await _open_invite(pool, token, lock=False))["email"]


async def accept_invite(
    pool: asyncpg.Pool, token: str, existing: User | None, password: str | None, actor: Actor
) -> tuple[Project, str, User]:
    """Joins the invited email's user to the project, creating the user (with `password`)
    when `existing` is None. The caller has checked an existing user's password."""
    password_hash = None
    if existing is None:
        if not password:
            raise BadRequest("the invited email has no account yet: send a password to create it")
        password_hash = await new_password_hash(password)
    async with pool.acquire() as connection, connection.transaction():
        row = await _open_invite(connection, token, lock=True)
        project = Project(row["project_id"], row["slug"], row["name"])
        # A user created meanwhile under this email makes insert_user a Conflict, never a join
        # without their password.
        user = existing or await insert_user(connection, row["email"], password_hash, actor)
        await add_member(connection, project, user.id, user.email, row["role"], actor, how=f"invite:{row['id']}")
        await connection.execute(
            "UPDATE project_invites SET accepted_at = now(), accepted_by = $2 WHERE id = $1", row["id"], user.id
        )
        await record(connection, actor, "invite.accepted", f"invite:{row['id']}", project.id, user.id,
                     details={"email": user.email, "role": row["role"]})
    return project, row["role"], user
