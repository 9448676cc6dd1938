"""MCP server health of the caller's project: calls, error rate, latency percentiles, last status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

from api.deps import CurrentProject
from api.reader import Reader
from api.repositories.servers import server_detail, server_stats
from api.window import Window

router = APIRouter(prefix="/api/health/servers", tags=["servers"])


class CallStats(BaseModel):
    """Latency percentiles are t-digest estimates; counts are exact (distinct span ids)."""

    calls: int
    failures: int  # error or timeout
    timeouts: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    last_call_at: datetime
    last_status: str | None  # of the latest call; None for calls recorded before it was kept


class ServerStats(CallStats):
    server_name: str


class ServerList(BaseModel):
    items: list[ServerStats]


class ToolStats(CallStats):
    tool_name: str


class HourStats(CallStats):
    hour: datetime


class ServerDetail(ServerStats):
    tools: list[ToolStats]
    hours: list[HourStats]


@router.get("", response_model=ServerList, summary="Each MCP server's calls, errors and latency in a window")
async def servers(project: CurrentProject, reader: Reader, window: Window) -> ServerList:
    return ServerList(items=[ServerStats(**row) for row in await server_stats(reader, str(project.id), window)])


@router.get("/{name}", response_model=ServerDetail, summary="One MCP server: per tool and per hour")
async def server(name: Annotated[str, Path(max_length=256)], project: CurrentProject, reader: Reader,
                 window: Window) -> ServerDetail:
    overall, tools, hours = await server_detail(reader, str(project.id), window, name)
    if overall is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no calls to MCP server {name!r} in this project in the window")
    return ServerDetail(**overall, tools=[ToolStats(**row) for row in tools], hours=[HourStats(**row) for row in hours])
