"""FastAPI dependencies: what the lifespan opened, and who is calling.

A caller presents an API key (which decides the project) or a login token from
POST /api/auth/login, which names the project in X-Project or in the path; a project the
user is not a member of answers 404 exactly like one that does not exist.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
per dependency per request on the ingestion hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import Depends, Header, HTTPException, Path, Request, status

from api.keys import key_prefix
from api.publisher import SpanPublisher
from api.ratelimit import SpanRateLimiter
from api.repositories.members import membership
from api.repositories.projects import KeyHolder, Project, holder_of_key
from api.repositories.users import LoginUser, user_of_token
from api.tokens import is_login_token
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings

# A revoked key stops working within this many seconds on every API process.
KEY_CACHE_SECONDS = 30.0


# Each role can do what the roles before it can.
ROLES = ("viewer", "member", "admin")


@dataclass(frozen=True)
class Caller:
    """Who is calling, for which project, with which role. `actor` names them in audit logs."""

    project: Project
    role: str
    actor: str
    key_prefix: str | None = None
    # Set when a user (not a key) is calling.
    user_id: UUID | None = None

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class KeyCache:
    """Remembers resolved keys briefly so that a busy producer costs no Postgres round trip
    per request. Only successes are cached; a wrong key is checked every time."""

    def __init__(self, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[KeyHolder, float]] = {}

    async def holder(self, pool: asyncpg.Pool, key: str) -> KeyHolder | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        holder = await holder_of_key(pool, key)
        if holder is None:
            self._entries.pop(key, None)
        else:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (holder, now + self._ttl)
        return holder

    def forget(self, prefix: str | None = None, project_id: UUID | None = None) -> None:
        """Drops a revoked key, or every key of a deleted project, so this process stops
        honouring it at once (other processes within the TTL)."""
        for key, (holder, _) in list(self._entries.items()):
            if key_prefix(key) == prefix or holder.project.id == project_id:
                self._entries.pop(key, None)


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


async def _store(request: Request) -> ClickHouseStore:
    store = request.app.state.store
    if store is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this API process serves ingestion only (no analytics store); query another instance",
        )
    return store


async def _publisher(request: Request) -> SpanPublisher:
    return request.app.state.publisher


async def _limiter(request: Request) -> SpanRateLimiter:
    return request.app.state.limiter


AppSettings = Annotated[Settings, Depends(_settings)]
Pool = Annotated[asyncpg.Pool, Depends(_pool)]
Store = Annotated[ClickHouseStore, Depends(_store)]
Publisher = Annotated[SpanPublisher, Depends(_publisher)]
Limiter = Annotated[SpanRateLimiter, Depends(_limiter)]


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def _unavailable(error: Exception) -> HTTPException:
    # The credential cannot be checked; the caller should retry, not treat it as a server bug.
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, "credentials cannot be checked right now; retry later",
        headers={"Retry-After": "5"},
    )


_DOWN = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
Credential = tuple[str, KeyHolder | LoginUser]


async def _credential(
    request: Request,
    pool: Pool,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Credential:
    """The presented token and what it stands for: a key's holder or a logged-in user."""
    token = presented_key(x_api_key, authorization)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing credentials: send an API key in X-API-Key or Authorization: Bearer, "
            "or a login token from POST /api/auth/login in Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        if is_login_token(token):
            user = await user_of_token(pool, token)
            if user is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login token unknown, expired or logged out",
                                    headers={"WWW-Authenticate": "Bearer"})
            return token, user
        holder = await request.app.state.keys.holder(pool, token)
    except _DOWN as error:
        raise _unavailable(error) from error
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return token, holder


async def _caller_in(pool: asyncpg.Pool, credential: Credential, project_ref: str | None) -> Caller:
    token, who = credential
    if isinstance(who, KeyHolder):
        # A key decides its project; naming another one in the path finds nothing.
        prefix = key_prefix(token) or ""
        if project_ref is not None and project_ref not in (who.project.slug, str(who.project.id)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no project {project_ref}")
        return Caller(who.project, who.role, f"key:{prefix}", prefix)
    if not project_ref:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "a login token acts in one project at a time: name it in the X-Project header (slug or id)",
        )
    try:
        found = await membership(pool, who.id, project_ref)
    except _DOWN as error:
        raise _unavailable(error) from error
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no project {project_ref}")
    project, role = found
    return Caller(project, role, f"user:{who.email}", None, who.id)


async def _caller(
    pool: Pool,
    credential: Annotated[Credential, Depends(_credential)],
    x_project: Annotated[str | None, Header(description="the project a login token acts in (slug or id)")] = None,
) -> Caller:
    """The caller in the project of its key, or (login tokens) the one named in X-Project."""
    return await _caller_in(pool, credential, x_project.strip() if x_project else None)


async def _path_caller(
    pool: Pool,
    credential: Annotated[Credential, Depends(_credential)],
    project: Annotated[str, Path(description="project slug or id", max_length=64)],
) -> Caller:
    """The caller in the project named by the path (/api/projects/{project}/...)."""
    return await _caller_in(pool, credential, project)


async def _user(credential: Annotated[Credential, Depends(_credential)]) -> LoginUser:
    who = credential[1]
    if not isinstance(who, LoginUser):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this needs a login token (POST /api/auth/login); an API key acts only within its project",
        )
    return who


async def _maybe_user(request: Request, pool: Pool,
                      authorization: Annotated[str | None, Header()] = None) -> LoginUser | None:
    """The logged-in user if a live login token is presented; None for anything else."""
    token = presented_key(None, authorization)
    if token is None or not is_login_token(token):
        return None
    try:
        return await user_of_token(pool, token)
    except _DOWN as error:
        raise _unavailable(error) from error


async def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _project(caller: Annotated[Caller, Depends(_caller)]) -> Project:
    return caller.project


def _requiring(role: str, resolve=_caller):
    # A default rather than Annotated: the annotation is a string under `from __future__`, and
    # `resolve` is not a module global it could be resolved against.
    async def check(caller: Caller = Depends(resolve)) -> Caller:
        if not caller.can(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the {role} role in the project; the caller has {caller.role}"
            )
        return caller

    return check


CurrentCaller = Annotated[Caller, Depends(_caller)]
CurrentProject = Annotated[Project, Depends(_project)]
# Writes (spans, SLOs, alert rules) need a member; managing the project needs an admin.
WriterCaller = Annotated[Caller, Depends(_requiring("member"))]
AdminCaller = Annotated[Caller, Depends(_requiring("admin"))]
# The same, for routes under /api/projects/{project}.
ProjectCaller = Annotated[Caller, Depends(_path_caller)]
ProjectAdmin = Annotated[Caller, Depends(_requiring("admin", _path_caller))]
CurrentUser = Annotated[LoginUser, Depends(_user)]
MaybeUser = Annotated[LoginUser | None, Depends(_maybe_user)]
# Either kind of credential, for the few routes that answer both differently.
Authenticated = Annotated[Credential, Depends(_credential)]
ClientIp = Annotated[str | None, Depends(_client_ip)]
