"""Operator endpoints: a replay run by the process that owns the analytics store."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from pydantic import BaseModel

from api.replay_jobs import ReplayJob, ReplayJobs, ReplayRunning

router = APIRouter(prefix="/api/admin", tags=["admin"])


class ReplayRequest(BaseModel):
    reprice: bool = False
    since: datetime | None = None


class ReplayStatus(BaseModel):
    id: str
    state: Literal["running", "done", "failed"]
    reprice: bool
    since: datetime | None
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    # Progress lines from `after` on, and where the next call should start.
    lines: list[str]
    next_line: int


async def _operator(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    token = request.app.state.operator_token
    presented = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else ""
    if not token or not presented or not hmac.compare_digest(presented.encode(), token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "operator token required (Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})


async def _jobs(request: Request) -> ReplayJobs:
    jobs = request.app.state.replay_jobs
    if jobs is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "this process does not own the analytics store")
    return jobs


Jobs = Annotated[ReplayJobs, Depends(_jobs)]


def _status(job: ReplayJob, after: int) -> ReplayStatus:
    lines = list(job.lines)
    return ReplayStatus(id=job.id, state=job.state, reprice=job.reprice, since=job.since, started_at=job.started_at,
                        finished_at=job.finished_at, error=job.error, lines=lines[after:], next_line=len(lines))


@router.post("/replay", status_code=status.HTTP_202_ACCEPTED, dependencies=[Depends(_operator)],
             responses={409: {"description": "a replay is already running"}})
async def start_replay(body: ReplayRequest, jobs: Jobs) -> ReplayStatus:
    """Starts rebuilding the derived views from the retained spans (`spanstream replay`)."""
    try:
        job = jobs.start(body.reprice, body.since)
    except ReplayRunning as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    return _status(job, 0)


@router.get("/replay/{job_id}", dependencies=[Depends(_operator)], responses={404: {"description": "no such replay"}})
async def replay_status(job_id: str, jobs: Jobs, after: Annotated[int, Query(ge=0)] = 0) -> ReplayStatus:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no replay {job_id}")
    return _status(job, after)
