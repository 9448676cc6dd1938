"""What the caller's project spent, by model, agent, MCP server or session, over a window."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, computed_field

from api.deps import CurrentProject
from api.reader import Reader
from api.repositories.costs import cost_breakdown
from api.window import Window

router = APIRouter(prefix="/api/costs", tags=["costs"])
NANO = 1_000_000_000


class Usage(BaseModel):
    sessions: int
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int
    cost_nano_usd: int

    @computed_field
    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO


class CostGroup(Usage):
    key: str  # the model, agent, MCP server or session id; '' for spans without one (e.g. tool calls by model)


class CostTotals(Usage):
    groups: int  # all groups in the window, also those past `limit`


class CostBreakdown(BaseModel):
    group_by: str
    window_start: datetime
    window_end: datetime
    items: list[CostGroup]  # costliest first
    totals: CostTotals


@router.get("/breakdown", response_model=CostBreakdown, summary="Costs grouped by model, agent, server or session")
async def breakdown(
    project: CurrentProject,
    reader: Reader,
    window: Window,
    group_by: Literal["model", "agent", "server", "session"] = "model",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CostBreakdown:
    items, totals = await cost_breakdown(reader, str(project.id), window, group_by, limit)
    return CostBreakdown(group_by=group_by, window_start=window.start, window_end=window.end,
                         items=[CostGroup(**item) for item in items], totals=CostTotals(**totals))
