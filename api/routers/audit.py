"""The audit log of the caller's project, for its admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.cursor import decode_cursor, page
from api.deps import AdminCaller, Pool
from api.models import AuditEvent, AuditPage, errors
from api.repositories.audit import list_events

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("/logs", responses=errors({400: "malformed cursor, or a login token without X-Project",
                                      403: "needs the admin role", 404: "X-Project names no project of the caller"}),
            summary="Metadata writes and authentication events, newest first")
async def logs(
    caller: AdminCaller,
    pool: Pool,
    action: Annotated[str | None, Query(max_length=64, description="e.g. auth.login_failed, key.revoked")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AuditPage:
    before = decode_cursor(cursor, int)[0] if cursor else None
    rows, next_cursor = page(await list_events(pool, caller.project.id, limit + 1, before, action), limit,
                             lambda r: (r["id"],))
    return AuditPage(items=[AuditEvent(**row) for row in rows], next_cursor=next_cursor)
