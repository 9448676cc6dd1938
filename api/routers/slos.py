"""SLOs of the caller's project: CRUD (reads any role, writes member+) and their current status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, model_validator

from api.cursor import decode_cursor, page
from api.deps import AppSettings, ClientIp, CurrentProject, Pool, Store, WriterCaller
from api.fields import RequestBody
from api.models import errors
from api.repositories.audit import Actor
from api.repositories.slo_status import read_slo
from api.repositories.slos import create_slo, delete_slo, get_slo, list_slos, replace_slo

router = APIRouter(prefix="/api/slos", tags=["slos"])

SloKind = Literal["success_rate", "p99_latency", "cost_budget"]
UNITS = {"success_rate": "percent", "p99_latency": "ms", "cost_budget": "usd"}
_LIST = errors({400: "malformed cursor"})
_WRITE = errors({403: "needs the member role"})
_ONE = errors({404: "no such SLO in this project"})
_CHANGE = errors({403: "needs the member role", 404: "no such SLO in this project"})


class SloIn(RequestBody):
    """`target` is in the kind's unit: success_rate the lowest acceptable percent of settled
    sessions that succeeded (0-100], p99_latency the highest acceptable p99 tool-call latency in
    ms, cost_budget the most the window may cost in USD. No `agent_name`: the whole project."""

    name: str = Field(min_length=1, max_length=200)
    kind: SloKind
    agent_name: str | None = Field(default=None, min_length=1, max_length=256)
    target: float = Field(gt=0, allow_inf_nan=False)
    window_hours: float = Field(gt=0, le=2160, allow_inf_nan=False, description="trailing window, at most 90 days")

    @model_validator(mode="after")
    def _percent(self) -> SloIn:
        if self.kind == "success_rate" and self.target > 100:
            raise ValueError("a success_rate target is a percentage: at most 100")
        return self


class SloOut(BaseModel):
    id: UUID
    name: str
    kind: SloKind
    agent_name: str | None
    target: float
    unit: Literal["percent", "ms", "usd"]
    window_hours: float
    created_at: datetime
    updated_at: datetime


class SloPage(BaseModel):
    items: list[SloOut]
    next_cursor: str | None


class SloStatus(BaseModel):
    slo: SloOut
    state: Literal["ok", "breached", "no_data"]
    value: float | None = Field(description="the current value in the SLO's unit; null when there is no data")
    target: float
    unit: Literal["percent", "ms", "usd"]
    sample: int = Field(description="settled sessions, tool calls or hourly cost cells the value was computed over")


class SloStatusPage(BaseModel):
    items: list[SloStatus]
    next_cursor: str | None


def _out(row: dict) -> SloOut:
    return SloOut(**row, unit=UNITS[row["kind"]])


async def _page(pool, project, limit: int, cursor: str | None):
    after = decode_cursor(cursor, datetime, UUID) if cursor else None
    return page(await list_slos(pool, project.id, limit + 1, after), limit, lambda r: (r["created_at"], r["id"]))


Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("", response_model=SloPage, responses=_LIST, summary="SLOs of the project")
async def slos(project: CurrentProject, pool: Pool, limit: Limit = 100, cursor: str | None = None) -> SloPage:
    rows, next_cursor = await _page(pool, project, limit, cursor)
    return SloPage(items=[_out(row) for row in rows], next_cursor=next_cursor)


@router.post("", response_model=SloOut, status_code=status.HTTP_201_CREATED, responses=_WRITE, summary="Define an SLO (member+)")
async def define_slo(body: SloIn, caller: WriterCaller, pool: Pool, ip: ClientIp) -> SloOut:
    return _out(await create_slo(pool, caller.project.id, body.model_dump(), Actor(caller.actor, ip)))


@router.get("/status", response_model=SloStatusPage, summary="Each SLO as ok, breached or no_data, with its current value",
            responses=errors({400: "malformed cursor", 503: "this process has no analytics store (ingestion only)"}))
async def slo_status(project: CurrentProject, pool: Pool, store: Store, settings: AppSettings,
                     limit: Limit = 100, cursor: str | None = None) -> SloStatusPage:
    rows, next_cursor = await _page(pool, project, limit, cursor)
    items = []
    for row in rows:
        reading = await read_slo(store, str(project.id), row, settings.incomplete_after_seconds)
        items.append(SloStatus(slo=_out(row), state=reading.state, value=reading.value, target=row["target"],
                               unit=UNITS[row["kind"]], sample=reading.sample))
    return SloStatusPage(items=items, next_cursor=next_cursor)


@router.get("/{slo_id}", response_model=SloOut, responses=_ONE, summary="One SLO")
async def slo(slo_id: UUID, project: CurrentProject, pool: Pool) -> SloOut:
    found = await get_slo(pool, project.id, slo_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SLO {slo_id} in this project")
    return _out(found)


@router.put("/{slo_id}", response_model=SloOut, responses=_CHANGE, summary="Replace an SLO's definition (member+)")
async def redefine_slo(slo_id: UUID, body: SloIn, caller: WriterCaller, pool: Pool, ip: ClientIp) -> SloOut:
    found = await replace_slo(pool, caller.project.id, slo_id, body.model_dump(), Actor(caller.actor, ip))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SLO {slo_id} in this project")
    return _out(found)


@router.delete("/{slo_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_CHANGE,
               summary="Delete an SLO and the alert rules watching it (member+)")
async def remove_slo(slo_id: UUID, caller: WriterCaller, pool: Pool, ip: ClientIp) -> Response:
    if not await delete_slo(pool, caller.project.id, slo_id, Actor(caller.actor, ip)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SLO {slo_id} in this project")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
