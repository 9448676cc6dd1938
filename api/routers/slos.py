"""SLOs of the caller's project: CRUD (reads any role, writes member+) and their current status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import AppSettings, CurrentProject, Pool, Store, WriterCaller
from api.fields import Text
from api.keyset import BadCursor
from api.repositories.slo_status import read_slo
from api.repositories.slos import create_slo, delete_slo, get_slo, list_slos, replace_slo

router = APIRouter(prefix="/api/slos", tags=["slos"])

SloKind = Literal["success_rate", "p99_latency", "cost_budget"]
UNITS = {"success_rate": "percent", "p99_latency": "ms", "cost_budget": "usd"}
_NOT_FOUND = {404: {"description": "no such SLO in this project"}}


class SloIn(BaseModel):
    """`target` is in the kind's unit: success_rate the lowest acceptable percent of settled
    sessions that succeeded (0-100], p99_latency the highest acceptable p99 tool-call latency in
    ms, cost_budget the most the window may cost in USD. No `agent_name`: the whole project."""

    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    kind: SloKind
    agent_name: Text | None = Field(default=None, min_length=1, max_length=256)
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
    try:
        return await list_slos(pool, project.id, limit, cursor)
    except BadCursor as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from error


Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("", response_model=SloPage, summary="SLOs of the project")
async def slos(project: CurrentProject, pool: Pool, limit: Limit = 100, cursor: str | None = None) -> SloPage:
    rows, next_cursor = await _page(pool, project, limit, cursor)
    return SloPage(items=[_out(row) for row in rows], next_cursor=next_cursor)


@router.post("", response_model=SloOut, status_code=status.HTTP_201_CREATED, summary="Define an SLO (member+)")
async def define_slo(body: SloIn, caller: WriterCaller, pool: Pool) -> SloOut:
    return _out(await create_slo(pool, caller.project.id, body.model_dump()))


@router.get("/status", response_model=SloStatusPage, summary="Each SLO as ok, breached or no_data, with its current value")
async def slo_status(project: CurrentProject, pool: Pool, store: Store, settings: AppSettings,
                     limit: Limit = 100, cursor: str | None = None) -> SloStatusPage:
    rows, next_cursor = await _page(pool, project, limit, cursor)
    items = []
    for row in rows:
        reading = await read_slo(store, str(project.id), row, settings.incomplete_after_seconds)
        items.append(SloStatus(slo=_out(row), state=reading.state, value=reading.value, target=row["target"],
                               unit=UNITS[row["kind"]], sample=reading.sample))
    return SloStatusPage(items=items, next_cursor=next_cursor)


@router.get("/{slo_id}", response_model=SloOut, responses=_NOT_FOUND, summary="One SLO")
async def slo(slo_id: UUID, project: CurrentProject, pool: Pool) -> SloOut:
    found = await get_slo(pool, project.id, slo_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SLO {slo_id} in this project")
    return _out(found)


@router.put("/{slo_id}", response_model=SloOut, responses=_NOT_FOUND, summary="Replace an SLO's definition (member+)")
async def redefine_slo(slo_id: UUID, body: SloIn, caller: WriterCaller, pool: Pool) -> SloOut:
    found = await replace_slo(pool, caller.project.id, slo_id, body.model_dump())
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SLO {slo_id} in this project")
    return _out(found)


@router.delete("/{slo_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND,
               summary="Delete an SLO and the alert rules watching it (member+)")
async def remove_slo(slo_id: UUID, caller: WriterCaller, pool: Pool) -> Response:
    if not await delete_slo(pool, caller.project.id, slo_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SLO {slo_id} in this project")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
