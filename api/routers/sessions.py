"""Agent sessions of the caller's project, as the stream worker materialized them, and their traces."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, computed_field

from api.cursor import decode_cursor, encode_cursor
from api.errors import BadRequest
from api.deps import AppSettings, CurrentProject, Pool
from api.reader import QueryCapped, Reader
from api.repositories.sessions import SORTS, SessionFilter, list_sessions, sort_key, summarize_sessions
from api.repositories.traces import session_trace, span_parents
from api.trace_tree import tree_places
from api.window import Window, micros
from schemas.session import CostCell, HealthTag, SessionFields

router = APIRouter(prefix="/api/agents/sessions", tags=["sessions"])
NANO = 1_000_000_000


class SessionOut(SessionFields):
    @computed_field
    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None = None


def _after(cursor: str | None, ordering: str, kind: type) -> list | None:
    """The keyset a cursor carries; it names the ordering it was made for, so a cursor of another
    sort (or another session's trace) is refused instead of skipping or repeating rows."""
    if cursor is None:
        return None
    made_for, value, last_id = decode_cursor(cursor, str, kind, str)
    if made_for != ordering:
        raise BadRequest("this cursor belongs to another sort or filter; start again without it")
    return [value, last_id]


def _nano(usd: float | None) -> int | None:
    return None if usd is None else round(usd * NANO)


@router.get("", response_model=SessionPage, summary="Sessions of the project active in a time window")
async def sessions(
    project: CurrentProject,
    reader: Reader,
    settings: AppSettings,
    window: Window,
    agent: Annotated[str | None, Query(max_length=256)] = None,
    health_tag: HealthTag | None = None,
    status_: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    server: Annotated[str | None, Query(max_length=256, description="sessions that called this MCP server")] = None,
    model: Annotated[str | None, Query(max_length=256)] = None,
    min_cost_usd: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    max_cost_usd: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    sort: Literal["last_at", "first_at", "cost", "duration", "spans", "errors"] = "last_at",
    order: Literal["desc", "asc"] = "desc",
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SessionPage:
    if min_cost_usd is not None and max_cost_usd is not None and min_cost_usd > max_cost_usd:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "min_cost_usd is above max_cost_usd")
    filters = SessionFilter(agent, health_tag, status_, server, model, _nano(min_cost_usd), _nano(max_cost_usd))
    ordering = f"sessions:{sort}:{order}"
    after = _after(cursor, ordering, SORTS[sort][2])
    rows = await list_sessions(
        reader, str(project.id), window, settings.incomplete_after_seconds, filters=filters, sort=sort,
        descending=order == "desc", after=after, limit=limit + 1,
    )
    next_cursor = encode_cursor(ordering, *sort_key(rows[limit - 1], sort)) if len(rows) > limit else None
    return SessionPage(items=[SessionOut(**row) for row in rows[:limit]], next_cursor=next_cursor)


class SessionSummary(BaseModel):
    sessions: int
    open_sessions: int
    spans: int
    cost_nano_usd: int


@router.get("/summary", response_model=SessionSummary, summary="Totals over the project's sessions in a window")
async def summary(
    project: CurrentProject, reader: Reader, hours: Annotated[float, Query(gt=0, le=24 * 365)] = 24
) -> SessionSummary:
    return SessionSummary(**await summarize_sessions(reader, str(project.id), hours))


class TraceSpan(BaseModel):
    """One span in the session's tree. `children` lists every child in the session, also those
    on other pages; `orphan` marks a span whose parent is not in the session (shown as a root)."""

    span_id: str
    parent_span_id: str
    depth: int
    children: list[str]
    orphan: bool
    trace_id: str
    span_type: str
    name: str
    agent_name: str
    target_agent_name: str
    server_name: str
    tool_name: str
    model_id: str
    status: str
    error: str
    started_at: datetime
    ended_at: datetime
    offset_ms: float  # from the session's first span
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int
    finish_reason: str
    cost_nano_usd: int
    priced: bool  # False: an unknown model, charged the fallback per call

    @computed_field
    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO


class SessionDetail(SessionOut):
    costs: list[CostCell]
    roots: list[str]  # spans with no parent in the session (orphans included), in start order
    trace: list[TraceSpan]  # this page of the session's spans, by start time
    next_cursor: str | None = None  # the next page of `trace`


@router.get("/{session_id}", response_model=SessionDetail,
            summary="One session: its costs and its spans as a tree, paged by start time")
async def session(
    session_id: str,
    request: Request,
    project: CurrentProject,
    reader: Reader,
    pool: Pool,
    settings: AppSettings,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page")] = None,
    limit: Annotated[int | None, Query(ge=1, description="spans per page (at most SPANSTREAM_TRACE_PAGE_MAX_SPANS)")] = None,
) -> SessionDetail:
    limit = min(limit or settings.trace_page_max_spans, settings.trace_page_max_spans)
    ordering = f"trace:{session_id}"
    after = _after(cursor, ordering, int)
    project_id = str(project.id)
    traced = await session_trace(reader, project_id, session_id, settings.incomplete_after_seconds, after, limit + 1,
                                 whole_up_to=settings.trace_page_max_spans)
    if traced is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no session {session_id!r} in this project")
    found, rows, whole = traced
    if whole:  # every span of the session was read: its shape is known, and this page is its start
        parents = {row["span_id"]: row["parent_span_id"] for row in rows}
        rows = rows[:limit + 1]
    else:
        parents = await span_parents(reader, project_id, session_id)
    places = tree_places(parents)
    try:
        book = await request.app.state.price_book.book(pool)
    except Exception as error:  # noqa: BLE001 - no prices readable yet: a retry may work, a 500 would not
        raise QueryCapped(status.HTTP_503_SERVICE_UNAVAILABLE, "model prices cannot be read right now; retry") from error
    first_us = micros(found["first_at"])
    trace = []
    for row in rows[:limit]:
        place = places.get(row["span_id"])
        price = book.price(row["model_id"] or None, row["started_at"], row["input_tokens"], row["output_tokens"],
                           row["cache_read_tokens"], row["cache_creation_tokens"], row["thinking_tokens"])
        trace.append(TraceSpan(
            **row, depth=place.depth if place else 0, children=place.children if place else [],
            orphan=place.orphan if place else False, offset_ms=(micros(row["started_at"]) - first_us) / 1000,
            cost_nano_usd=price.nano_usd, priced=price.priced,
        ))
    roots = [span for span, place in sorted(places.items()) if place.depth == 0]
    started = {row["span_id"]: row["started_at"] for row in rows}
    roots.sort(key=lambda span: (started.get(span) is None, started.get(span) or found["first_at"], span))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(ordering, micros(last["started_at"]), last["span_id"])
    return SessionDetail(**found, roots=roots, trace=trace, next_cursor=next_cursor)
