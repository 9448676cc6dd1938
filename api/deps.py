"""FastAPI dependencies: the stores opened at start-up and the caller's project."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Header, HTTPException, Request, status

from api.repositories.projects import Project, project_for_key
from spanstream.clickhouse import ClickHouseStore


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def _store(request: Request) -> ClickHouseStore:
    return request.app.state.store


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
Store = Annotated[ClickHouseStore, Depends(_store)]


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


async def _project(
    pool: Pool,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Project:
    key = presented_key(x_api_key, authorization)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send it in X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    project = await project_for_key(pool, key)
    if project is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return project


CurrentProject = Annotated[Project, Depends(_project)]
