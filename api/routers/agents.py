"""The agents of the caller's project seen in a window, with their last activity and totals."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, computed_field

from api.deps import CurrentProject
from api.reader import Reader
from api.repositories.agents import agents_seen
from api.window import Window

router = APIRouter(prefix="/api/agents", tags=["agents"])
NANO = 1_000_000_000


class AgentOut(BaseModel):
    agent_name: str
    last_at: datetime | None  # end of its latest session in the window
    sessions: int
    spans: int  # spans of this agent (a session with several agents splits its spans between them)
    cost_nano_usd: int

    @computed_field
    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO


class AgentList(BaseModel):
    items: list[AgentOut]  # most recently active first


@router.get("", response_model=AgentList, summary="Agents seen in a window, most recently active first")
async def agents(project: CurrentProject, reader: Reader, window: Window) -> AgentList:
    return AgentList(items=[AgentOut(**row) for row in await agents_seen(reader, str(project.id), window)])
