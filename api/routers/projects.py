"""Projects and their members: create, list mine, get, rename, delete; roles of members."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status

from api.cursor import decode_cursor, page
from api.deps import Authenticated, ClientIp, CurrentUser, Pool, ProjectAdmin, ProjectCaller
from api.errors import BadRequest
from api.models import (MemberOut, MemberPage, NewProject, ProjectChange, ProjectMembership, ProjectPage,
                        RoleChange, errors)
from api.repositories.audit import Actor
from api.repositories.members import change_role, list_members, projects_of_user, remove_member
from api.repositories.projects import KeyHolder, create_project, delete_project, update_project

router = APIRouter(prefix="/api/projects", tags=["projects"], responses=errors({400: "malformed cursor"}))

_NOT_FOUND = {404: "no such project, or the caller is not a member"}
_ADMIN = {**_NOT_FOUND, 403: "needs the admin role in the project"}
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors({403: "needs a login token", 409: "slug taken"}),
             summary="Create a project; its creator becomes its admin")
async def create(body: NewProject, user: CurrentUser, pool: Pool, ip: ClientIp) -> ProjectMembership:
    project = await create_project(pool, body.slug, body.name or body.slug, user.id, Actor(f"user:{user.email}", ip))
    return ProjectMembership(**vars(project), role="admin")


@router.get("", summary="The projects the caller belongs to (an API key: its own)")
async def mine(credential: Authenticated, pool: Pool, limit: Limit = 100, cursor: str | None = None) -> ProjectPage:
    who = credential[1]
    if isinstance(who, KeyHolder):
        return ProjectPage(items=[ProjectMembership(**vars(who.project), role=who.role)], next_cursor=None)
    after = decode_cursor(cursor, str)[0] if cursor else None
    rows, next_cursor = page(await projects_of_user(pool, who.id, limit + 1, after), limit, lambda r: (r["slug"],))
    return ProjectPage(items=[ProjectMembership(**row) for row in rows], next_cursor=next_cursor)


@router.get("/{project}", responses=errors(_NOT_FOUND), summary="One project, with the caller's role in it")
async def get(caller: ProjectCaller) -> ProjectMembership:
    return ProjectMembership(**vars(caller.project), role=caller.role)


@router.patch("/{project}", responses=errors({**_ADMIN, 400: "nothing to change", 409: "slug taken"}),
              summary="Rename a project (name and/or slug)")
async def rename(body: ProjectChange, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> ProjectMembership:
    if body.name is None and body.slug is None:
        raise BadRequest("nothing to change: send a name, a slug or both")
    project = await update_project(pool, caller.project, Actor(caller.actor, ip), body.name, body.slug)
    return ProjectMembership(**vars(project), role=caller.role)


@router.delete("/{project}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(_ADMIN),
               summary="Delete a project with its members, keys and invites")
async def delete(request: Request, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> Response:
    await delete_project(pool, caller.project, Actor(caller.actor, ip))
    request.app.state.keys.forget(project_id=caller.project.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{project}/members", responses=errors(_NOT_FOUND), summary="Members of the project and their roles")
async def members(caller: ProjectCaller, pool: Pool, limit: Limit = 100, cursor: str | None = None) -> MemberPage:
    after = decode_cursor(cursor, str)[0] if cursor else None
    rows, next_cursor = page(await list_members(pool, caller.project.id, limit + 1, after), limit,
                             lambda r: (r["email"],))
    return MemberPage(items=[MemberOut(**row) for row in rows], next_cursor=next_cursor)


@router.patch("/{project}/members/{user_id}", responses=errors({**_ADMIN, 409: "the last admin"}),
              summary="Change a member's role; the last admin cannot be demoted")
async def set_role(user_id: UUID, body: RoleChange, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> MemberOut:
    return MemberOut(**await change_role(pool, caller.project, user_id, body.role, Actor(caller.actor, ip)))


@router.delete("/{project}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors({**_ADMIN, 409: "the last admin"}),
               summary="Remove a member; the last admin cannot be removed")
async def remove(user_id: UUID, caller: ProjectAdmin, pool: Pool, ip: ClientIp) -> Response:
    await remove_member(pool, caller.project, user_id, Actor(caller.actor, ip))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
