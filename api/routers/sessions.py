"""Agent sessions of the caller's project, as the stream worker materialized them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, computed_field

from api.deps import AppSettings, CurrentProject, Store
from api.repositories.sessions import get_session, list_sessions, summarize_sessions
from schemas.session import CostCell, HealthTag, SessionFields

router = APIRouter(prefix="/api/agents/sessions", tags=["sessions"])
NANO = 1_000_000_000


class SessionOut(SessionFields):
    @computed_field
    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO


class SessionDetail(SessionOut):
    costs: list[CostCell]


class SessionPage(BaseModel):
    items: list[SessionOut]


@router.get("", response_model=SessionPage, summary="Recent sessions of the project")
async def sessions(
    project: CurrentProject,
    store: Store,
    settings: AppSettings,
    hours: Annotated[float, Query(gt=0, le=24 * 365)] = 24,
    health_tag: HealthTag | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SessionPage:
    rows = await list_sessions(store, str(project.id), hours, limit, settings.incomplete_after_seconds, health_tag)
    return SessionPage(items=[SessionOut(**row) for row in rows])


class SessionSummary(BaseModel):
    sessions: int
    open_sessions: int
    spans: int
    cost_nano_usd: int


@router.get("/summary", response_model=SessionSummary, summary="Totals over the project's sessions in a window")
async def summary(
    project: CurrentProject, store: Store, hours: Annotated[float, Query(gt=0, le=24 * 365)] = 24
) -> SessionSummary:
    return SessionSummary(**await summarize_sessions(store, str(project.id), hours))


@router.get("/{session_id}", response_model=SessionDetail, summary="One session with its costs by hour, model, agent and server")
async def session(session_id: str, project: CurrentProject, store: Store, settings: AppSettings) -> SessionDetail:
    found = await get_session(store, str(project.id), session_id, settings.incomplete_after_seconds)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no session {session_id!r} in this project")
    return SessionDetail(**found)
