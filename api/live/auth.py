"""Who is calling the live feed: the API key from a header, or from `?api_key=` for this endpoint only.

Browsers' EventSource cannot send headers, so a dashboard page could not authenticate with
X-API-Key at all. A key in a URL is more exposed (browser history, proxy and access logs), so
the query form is accepted here and nowhere else; a viewer key is enough to watch the feed.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Header, HTTPException, Query, Request, status

from api.deps import Pool, presented_key
from api.repositories.projects import Project


async def _live_project(
    request: Request,
    pool: Pool,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
    api_key: Annotated[str | None, Query(description="The API key, for clients that cannot send headers (EventSource)")] = None,
) -> Project:
    key = presented_key(x_api_key, authorization) or (api_key.strip() if api_key else None)
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send it in X-API-Key, Authorization: Bearer, or (EventSource) ?api_key=",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        holder = await request.app.state.keys.holder(pool, key)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "API keys cannot be checked right now; retry later",
            headers={"Retry-After": "5"},
        ) from error
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return holder.project


LiveProject = Annotated[Project, Depends(_live_project)]
