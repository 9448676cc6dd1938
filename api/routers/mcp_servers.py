"""MCP servers a project registers for health checks, their latest status and check history."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from api.deps import AppSettings, CurrentProject, Pool, WriterCaller
from api.reader import CappedReader, Reader
from api.repositories.mcp_health import latest_health, list_checks, list_events
from api.repositories.mcp_servers import (
    EDITABLE, DuplicateServer, create_server, delete_server, get_server, list_servers, update_server,
)
from spanstream.clickhouse import ClickHouseStore

router = APIRouter(prefix="/api/mcp/servers", tags=["mcp health"])
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
REDACTED = "***"
Transport = Literal["stdio", "sse", "streamable_http"]


def _no_line_breaks(values: dict[str, str], what: str) -> dict[str, str]:
    for key, value in values.items():
        if not key or any(c in key + value for c in "\r\n\0"):
            raise ValueError(f"{what} names must be non-empty and names and values free of line breaks and NUL")
    return values


class ServerFields(BaseModel):
    """How to reach a server and how to probe it. stdio: `command` (+ `args`, `env`); sse and
    streamable_http: an http(s) `url` (+ `headers`)."""

    model_config = ConfigDict(extra="forbid")

    transport: Transport
    command: str | None = Field(default=None, min_length=1, max_length=4096)
    args: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(default_factory=dict, max_length=256)
    url: str | None = Field(default=None, max_length=4096)
    headers: dict[str, str] = Field(default_factory=dict, max_length=64)
    interval_seconds: float = Field(default=60, ge=1, le=86_400, description="time between probes")
    timeout_seconds: float = Field(default=10, gt=0, le=300, description="past this without an answer: down")
    degraded_after_ms: float = Field(default=2000, gt=0, le=600_000,
                                     description="initialize + tools/list slower than this: degraded")
    enabled: bool = True

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return _no_line_breaks(value, "env")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _no_line_breaks(value, "header")

    @model_validator(mode="after")
    def _transport_fields(self) -> ServerFields:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio server needs a command")
            if self.url or self.headers:
                raise ValueError("a stdio server takes command, args and env, not url or headers")
        else:
            if self.command or self.args or self.env:
                raise ValueError(f"a {self.transport} server takes url and headers, not command, args or env")
            parts = urlsplit(self.url or "")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"a {self.transport} server needs an http:// or https:// url")
        return self


class ServerIn(ServerFields):
    name: str = Field(pattern=NAME_PATTERN, description="unique in the project; letters, digits, . _ -")


class ServerPatch(BaseModel):
    """Only the fields given change; changing the transport drops the other transport's fields."""

    model_config = ConfigDict(extra="forbid")

    transport: Transport | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    interval_seconds: float | None = None
    timeout_seconds: float | None = None
    degraded_after_ms: float | None = None
    enabled: bool | None = None


class LatestHealth(BaseModel):
    status: str
    checked_at: datetime
    check_id: str
    latency_ms: float | None
    tool_count: int | None
    tools_hash: str
    error: str
    status_since: datetime
    last_up_at: datetime | None


class ServerOut(ServerFields):
    """env and header values are shown as ***: they often hold credentials."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    created_at: datetime
    updated_at: datetime
    latest: LatestHealth | None = Field(default=None, description="the last check; null if never checked")


class ServerPage(BaseModel):
    items: list[ServerOut]
    next_cursor: str | None


class CheckOut(BaseModel):
    check_id: str
    checked_at: datetime
    status: str
    latency_ms: float | None
    initialize_ms: float | None
    list_tools_ms: float | None
    tool_count: int | None
    tools_hash: str
    tool_names: list[str]
    error: str
    server_version: str
    protocol_version: str
    transport: str
    prober: str


class CheckPage(BaseModel):
    items: list[CheckOut]
    next_cursor: str | None


class EventOut(BaseModel):
    kind: Literal["schema_drift", "down", "recovered", "degraded"]
    at: datetime
    check_id: str
    previous_check_id: str
    status: str
    previous_status: str
    old_hash: str
    new_hash: str
    tools_added: list[str]
    tools_removed: list[str]
    tools_changed: list[str]
    error: str


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


async def _optional_reader(request: Request, settings: AppSettings) -> CappedReader | None:
    # The server list works on an ingestion-only API too, without the latest status.
    store: ClickHouseStore | None = request.app.state.store
    if store is None:
        return None
    return CappedReader(store, settings.query_max_execution_seconds, settings.query_max_memory_bytes)


OptionalReader = Annotated[CappedReader | None, Depends(_optional_reader)]


def _encode_cursor(*position: Any) -> str:
    values = [value.isoformat() if isinstance(value, datetime) else value for value in position]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != size or not all(isinstance(v, str) for v in values):
            raise ValueError
        if size > 1:
            values[0] = datetime.fromisoformat(values[0])
        return values
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "cursor is not one this endpoint returned") from error


def _redacted(server: dict[str, Any]) -> dict[str, Any]:
    return {**server, "id": str(server["id"]), "env": {k: REDACTED for k in server["env"]},
            "headers": {k: REDACTED for k in server["headers"]}}


def _check_allowed(fields: ServerFields, caller, settings) -> None:
    # A stdio server is a command the prober runs on its host: only where allowed, and only admins.
    if fields.transport != "stdio":
        return
    if not settings.probe_stdio:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "stdio MCP servers are turned off on this deployment (SPANSTREAM_PROBE_STDIO)")
    if not caller.can("admin"):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"a stdio server runs a command on the prober's host: this needs the admin role; "
                            f"the caller has {caller.role}")


async def _registered(pool, project, name: str) -> dict[str, Any]:
    server = await get_server(pool, project.id, name)
    if server is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no MCP server {name!r} in this project")
    return server


@router.post("", response_model=ServerOut, status_code=status.HTTP_201_CREATED, summary="Register an MCP server")
async def register(body: ServerIn, caller: WriterCaller, pool: Pool, settings: AppSettings) -> ServerOut:
    _check_allowed(body, caller, settings)
    try:
        created = await create_server(pool, caller.project.id, body.model_dump())
    except DuplicateServer:
        raise HTTPException(status.HTTP_409_CONFLICT, f"this project already has an MCP server named {body.name!r}")
    return ServerOut(**_redacted(created))


@router.get("", response_model=ServerPage, summary="The project's MCP servers with their latest status")
async def servers(
    project: CurrentProject, pool: Pool, reader: OptionalReader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
) -> ServerPage:
    after = _decode_cursor(cursor, 1)[0] if cursor else None
    rows = await list_servers(pool, project.id, after, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    latest = await latest_health(reader, str(project.id), [row["name"] for row in page]) if reader else {}
    items = [ServerOut(**_redacted(row), latest=latest.get(row["name"])) for row in page]
    return ServerPage(items=items, next_cursor=_encode_cursor(page[-1]["name"]) if more else None)


@router.get("/{name}", response_model=ServerOut, summary="One MCP server with its latest status")
async def server(name: str, project: CurrentProject, pool: Pool, reader: OptionalReader) -> ServerOut:
    found = await _registered(pool, project, name)
    latest = await latest_health(reader, str(project.id), [name]) if reader else {}
    return ServerOut(**_redacted(found), latest=latest.get(name))


@router.patch("/{name}", response_model=ServerOut, summary="Change how an MCP server is reached or probed")
async def change(name: str, body: ServerPatch, caller: WriterCaller, pool: Pool, settings: AppSettings) -> ServerOut:
    current = await _registered(pool, caller.project, name)
    given = body.model_dump(exclude_unset=True)
    merged = {field: current[field] for field in EDITABLE}
    if given.get("transport") not in (None, current["transport"]):
        merged.update(command=None, args=[], env={}, url=None, headers={})
    merged.update(given)
    try:
        fields = ServerFields(**merged)
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            [{"loc": e["loc"], "msg": e["msg"]} for e in error.errors()]) from None
    _check_allowed(fields, caller, settings)
    if current["transport"] == "stdio" and fields.transport != "stdio":
        _check_allowed(ServerFields(**{f: current[f] for f in EDITABLE}), caller, settings)
    updated = await update_server(pool, caller.project.id, name, fields.model_dump())
    if updated is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no MCP server {name!r} in this project")
    return ServerOut(**_redacted(updated))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Stop probing and forget an MCP server")
async def remove(name: str, caller: WriterCaller, pool: Pool) -> Response:
    if not await delete_server(pool, caller.project.id, name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no MCP server {name!r} in this project")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/checks", response_model=CheckPage, summary="The server's checks, newest first")
async def checks(
    name: str, project: CurrentProject, pool: Pool, reader: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
    status_: Annotated[Literal["up", "degraded", "down"] | None, Query(alias="status")] = None,
) -> CheckPage:
    await _registered(pool, project, name)
    before = tuple(_decode_cursor(cursor, 2)) if cursor else None
    rows = await list_checks(reader, str(project.id), name, before, limit + 1, status_)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode_cursor(page[-1]["checked_at"], page[-1]["check_id"]) if more else None
    return CheckPage(items=[CheckOut(**row) for row in page], next_cursor=next_cursor)


@router.get("/{name}/events", response_model=EventPage, summary="Schema drift and status changes, newest first")
async def events(
    name: str, project: CurrentProject, pool: Pool, reader: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
    kind: Literal["schema_drift", "down", "recovered", "degraded"] | None = None,
) -> EventPage:
    await _registered(pool, project, name)
    before = tuple(_decode_cursor(cursor, 3)) if cursor else None
    rows = await list_events(reader, str(project.id), name, before, limit + 1, kind)
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    next_cursor = _encode_cursor(last["at"], last["check_id"], last["kind"]) if more else None
    return EventPage(items=[EventOut(**row) for row in page], next_cursor=next_cursor)
