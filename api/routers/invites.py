"""Invites into a project: create (the token is shown once), list, revoke. Admins only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from api.cursor import decode_cursor, page
from api.deps import AppSettings, ClientIp, Pool, ProjectAdmin
from api.models import CreatedInvite, errors, InviteOut, InvitePage, NewInvite
from api.repositories.audit import Actor
from api.repositories.invites import create_invite, list_invites, revoke_invite
from api.repositories.users import normalize_email

router = APIRouter(prefix="/api/projects/{project}/invites", tags=["invites"])

_ADMIN = {404: "no such project or invite", 403: "needs the admin role", 400: "malformed cursor or email"}
_CREATE = {**_ADMIN, 409: "already a member"}


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(_CREATE),
             summary="Invite an email into the project with a role")
async def create(body: NewInvite, caller: ProjectAdmin, pool: Pool, settings: AppSettings, ip: ClientIp) -> CreatedInvite:
    hours = body.expires_in_hours or settings.invite_expiry_hours
    row, token = await create_invite(pool, caller.project, normalize_email(body.email), body.role, hours,
                                     Actor(caller.actor, ip))
    return CreatedInvite(**row, token=token)


@router.get("", responses=errors(_ADMIN), summary="The project's invites, newest first, with their state")
async def invites(caller: ProjectAdmin, pool: Pool, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  cursor: str | None = None) -> InvitePage:
    before = decode_cursor(cursor, datetime, UUID) if cursor else None
    rows, next_cursor = page(await list_invites(pool, caller.project.id, limit + 1, before), limit,
                             lambda r: (r["created_at"], r["id"]))
    return InvitePage(items=[InviteOut(**row) for row in rows], next_cursor=next_cursor)


@router.delete("/{invite_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors({**_ADMIN, 410: "already accepted"}), summary="Revoke an invite")
async def revoke(invite_id: UUID, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> Response:
    await revoke_invite(pool, caller.project, invite_id, Actor(caller.actor, ip))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
