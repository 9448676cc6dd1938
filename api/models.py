"""Request and response bodies of the metadata endpoints (users, projects, members, keys, audit)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

Role = Literal["admin", "member", "viewer"]
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # as projects.slug's CHECK (migration 0001)
Email = Field(min_length=3, max_length=320)
# Longer than any password we accept, so a long one gets our message rather than a 422.
Password = Field(min_length=1, max_length=4096)


class UserOut(BaseModel):
    id: UUID
    email: str
    created_at: datetime


class ProjectOut(BaseModel):
    id: UUID
    slug: str
    name: str


class ProjectMembership(ProjectOut):
    role: Role


class ProjectPage(BaseModel):
    items: list[ProjectMembership]
    next_cursor: str | None


class LoginRequest(BaseModel):
    email: str = Email
    password: str = Password


class LoginResponse(BaseModel):
    token: str = Field(description="send as Authorization: Bearer, with X-Project naming the project")
    expires_at: datetime
    user: UserOut


class Me(UserOut):
    projects: list[ProjectMembership]


class AcceptInviteRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=4096,
                                 description="a new password if the email has no account yet, else the account's")


class AcceptedInvite(LoginResponse):
    project: ProjectOut
    role: Role


class NewProject(BaseModel):
    slug: str = Field(pattern=SLUG_PATTERN, description="lowercase letters, digits, - and _; at most 63")
    name: str | None = Field(default=None, min_length=1, max_length=200)


class ProjectChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN)


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    role: Role
    member_since: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class RoleChange(BaseModel):
    role: Role


class NewInvite(BaseModel):
    email: str = Email
    role: Role = "member"
    expires_in_hours: float | None = Field(default=None, gt=0, le=24 * 90)


class InviteOut(BaseModel):
    id: UUID
    email: str
    role: Role
    state: Literal["pending", "accepted", "revoked", "expired"]
    created_by: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class CreatedInvite(InviteOut):
    token: str = Field(description="shown once: give it to the invitee, who posts it to /api/auth/accept-invite")


class InvitePage(BaseModel):
    items: list[InviteOut]
    next_cursor: str | None


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role = "member"


class KeyOut(BaseModel):
    id: UUID
    name: str
    prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedKey(KeyOut):
    key: str = Field(description="shown once; only its hash is stored")


class KeyPage(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None


class AuditEvent(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    project_id: UUID | None
    user_id: UUID | None
    client_ip: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None


class ErrorMessage(BaseModel):
    """What every 4xx (and 503) of these endpoints carries: what is wrong, in words."""

    detail: str


# Any authenticated endpoint may answer these.
_COMMON = {401: "missing, unknown, expired or revoked credentials",
           503: "credentials cannot be checked right now (PostgreSQL unavailable); retry"}


def errors(described: dict[int, str]) -> dict[int | str, dict]:
    """OpenAPI `responses` for these status codes, each with the ErrorMessage body."""
    return {code: {"model": ErrorMessage, "description": text} for code, text in {**_COMMON, **described}.items()}
