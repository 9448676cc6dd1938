"""FastAPI dependencies: what the lifespan opened, and who is calling.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
per dependency per request on the ingestion hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, HTTPException, Request, status

from api.keys import key_prefix
from api.publisher import SpanPublisher
from api.ratelimit import SpanRateLimiter
from api.repositories.projects import KeyHolder, Project, holder_of_key
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


async def _caller(
    request: Request,
    pool: Pool,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    key = presented_key(x_api_key, authorization)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send it in X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        holder = await request.app.state.keys.holder(pool, key)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The key cannot be checked; the caller should retry, not treat it as a server bug.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "API keys cannot be checked right now; retry later",
            headers={"Retry-After": "5"},
        ) from error
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    prefix = key_prefix(key) or ""
    return Caller(holder.project, holder.role, f"key:{prefix}", prefix)


async def _project(caller: Annotated[Caller, Depends(_caller)]) -> Project:
    return caller.project


def _requiring(role: str):
    async def check(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
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
