"""Who is calling the live feed: credentials from the headers, or from `?api_key=` for this endpoint only.

Browsers' EventSource cannot send headers, so a dashboard page could not authenticate with
X-API-Key at all. A credential in a URL is more exposed (browser history, proxy and access
logs), so the query form is accepted here and nowhere else; a viewer key is enough to watch.
A login token works too, with the project in X-Project or `?project=`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request, status

from api.deps import Caller, Pool, _caller_in, _credential, presented_key


async def _live_caller(
    request: Request,
    pool: Pool,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
    x_project: Annotated[str | None, Header()] = None,
    api_key: Annotated[str | None, Query(
        description="an API key (or login token), for clients that cannot send headers: EventSource")] = None,
    project: Annotated[str | None, Query(max_length=64, description="with a login token: the project (slug or id)")] = None,
) -> Caller:
    token = presented_key(x_api_key, authorization) or (api_key.strip() if api_key else None)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing credentials: send an API key in X-API-Key or Authorization: Bearer, or (EventSource) ?api_key=",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # The same checks as every endpoint's, on whichever way the credential came.
    credential = await _credential(request, pool, x_api_key=token, authorization=None)
    project_ref = x_project or project
    return await _caller_in(pool, credential, project_ref.strip() if project_ref else None)


LiveCaller = Annotated[Caller, Depends(_live_caller)]
