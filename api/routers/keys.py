"""A project's API keys: create (the plaintext is shown once), list, revoke. Admins only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status

from api.cursor import decode_cursor, page
from api.deps import ClientIp, Pool, ProjectAdmin
from api.models import CreatedKey, errors, KeyOut, KeyPage, NewKey
from api.repositories.api_keys import create_key, list_keys, revoke_key
from api.repositories.audit import Actor

router = APIRouter(prefix="/api/projects/{project}/keys", tags=["api keys"])

_ADMIN = errors({404: "no such project or key", 403: "needs the admin role", 400: "malformed cursor"})


@router.post("", status_code=status.HTTP_201_CREATED, responses=_ADMIN, summary="Create an API key")
async def create(body: NewKey, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> CreatedKey:
    row, plaintext = await create_key(pool, caller.project, body.name, body.role, Actor(caller.actor, ip))
    return CreatedKey(**row, key=plaintext)


@router.get("", responses=_ADMIN, summary="The project's keys, newest first, revoked ones included")
async def keys(caller: ProjectAdmin, pool: Pool, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               cursor: str | None = None) -> KeyPage:
    before = decode_cursor(cursor, datetime, UUID) if cursor else None
    rows, next_cursor = page(await list_keys(pool, caller.project.id, limit + 1, before), limit,
                             lambda r: (r["created_at"], r["id"]))
    return KeyPage(items=[KeyOut(**row) for row in rows], next_cursor=next_cursor)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ADMIN,
               summary="Revoke a key: refused at once here, on other API processes within the key cache TTL")
async def revoke(key_id: UUID, request: Request, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> Response:
    row = await revoke_key(pool, caller.project, key_id, Actor(caller.actor, ip))
    request.app.state.keys.forget(prefix=row["prefix"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)
