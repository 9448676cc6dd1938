"""Span reads for the caller's project."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentProject, Store
from api.repositories.spans import recent_spans

router = APIRouter(prefix="/api/spans", tags=["spans"])


class SpanOut(BaseModel):
    span_id: str
    trace_id: str
    session_id: str
    parent_span_id: str
    span_type: str
    name: str
    agent_name: str
    server_name: str
    tool_name: str
    model_id: str
    status: str
    error: str
    started_at: datetime
    ended_at: datetime
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int


class SpanPage(BaseModel):
    items: list[SpanOut]


@router.get("", response_model=SpanPage, summary="The project's most recent spans")
async def list_spans(
    project: CurrentProject,
    store: Store,
    session_id: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SpanPage:
    rows = await recent_spans(store, str(project.id), limit, session_id)
    return SpanPage(items=[SpanOut(**row) for row in rows])
