"""Probes one MCP server with the official MCP SDK: `initialize`, then `tools/list`.

Lives in `spanstream/` beside the other adapters: it is I/O (a child process or an HTTP
connection) that neither the stream core nor the query layer owns; the prober (spanstream/prober.py)
schedules it. A probe never outlives its timeout by more than the SDK's bounded shutdown of a
stdio child (close stdin, 2 s, SIGTERM to the process group, 2 s, SIGKILL), so a server that hangs
or dies cannot hang the prober.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import httpcore2
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation, PaginatedRequestParams

from schemas.health_check import HealthCheck, judge, tool_fingerprints, tools_hash

CLIENT_INFO = Implementation(name="spanstream-prober", version="0.1.0")
# A server that pages its tools endlessly is answered after this many pages.
MAX_TOOL_PAGES = 50
STDERR_TAIL = 500


@dataclass(frozen=True)
class McpServer:
    """A registered server, as the prober reads it from PostgreSQL (mcp_servers)."""

    id: str
    project_id: str
    name: str
    transport: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    interval_seconds: float = 60.0
    timeout_seconds: float = 10.0
    degraded_after_ms: float = 2000.0

    @property
    def key(self) -> str:
        return f"{self.project_id}/{self.name}"


class _ClosedSessionNoise(logging.Filter):
    """The SDK logs a traceback when a message arrives on a session the probe already closed
    (its GET stream outlives the last answer); that is the end of a probe, not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (anyio.ClosedResourceError, anyio.BrokenResourceError))


logging.getLogger("mcp.client.streamable_http").addFilter(_ClosedSessionNoise())


@functools.cache
def _tls() -> ssl.SSLContext:
    # One context for every probe: building one (loading the CA bundle) is ~30 ms of CPU, most
    # of what an HTTP probe costs. The SDK's client factory builds a new one per client.
    return httpcore2.default_ssl_context()


def _http_client(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                 auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    """The SDK's client factory (mcp.shared._httpx_utils.create_mcp_http_client) with the shared TLS context."""
    return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=_tls())


@contextlib.asynccontextmanager
async def _connect(server: McpServer, errlog):
    if server.transport == "stdio":
        params = StdioServerParameters(command=server.command or "", args=list(server.args), env=dict(server.env) or None)
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams
    elif server.transport == "streamable_http":
        client = _http_client(headers=dict(server.headers) or None, timeout=httpx2.Timeout(server.timeout_seconds))
        async with client, streamable_http_client(server.url or "", http_client=client) as streams:
            yield streams
    elif server.transport == "sse":
        async with sse_client(server.url or "", headers=dict(server.headers) or None, timeout=server.timeout_seconds,
                              sse_read_timeout=server.timeout_seconds, httpx_client_factory=_http_client) as streams:
            yield streams
    else:
        raise ValueError(f"unknown transport {server.transport!r}")


def _describe(error: BaseException) -> str:
    # The SDK's task groups wrap what went wrong in exception groups; the first leaf says it.
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:1000]


async def _list_tools(session: ClientSession) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_TOOL_PAGES):
        result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in result.tools)
        cursor = result.next_cursor
        if not cursor:
            break
    return tools


async def probe(server: McpServer, prober: str = "") -> HealthCheck:
    """One check of `server`; never raises for anything the server does (that is its status)."""
    checked_at = datetime.now(UTC)
    phase = "connect"
    initialize_ms = list_ms = None
    tools: list[dict[str, Any]] | None = None
    error: str | None = None
    info = None
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with asyncio.timeout(server.timeout_seconds):
                async with _connect(server, errlog) as (read, write):
                    async with ClientSession(read, write, client_info=CLIENT_INFO) as session:
                        phase = "initialize"
                        start = time.perf_counter()
                        info = await session.initialize()
                        initialize_ms = (time.perf_counter() - start) * 1000
                        phase = "tools/list"
                        start = time.perf_counter()
                        tools = await _list_tools(session)
                        list_ms = (time.perf_counter() - start) * 1000
                        phase = "close"
        except TimeoutError:
            if phase != "close":
                error = f"no answer to {phase} within {server.timeout_seconds:g} s"
        except Exception as failure:  # noqa: BLE001 - whatever the server did is its status
            if phase != "close":
                error = f"{phase} failed: {_describe(failure)}"
        if error is not None:
            errlog.seek(0)
            stderr = errlog.read()[-STDERR_TAIL:].strip()
            if stderr:
                error += f"; server stderr: {stderr}"
    initialized = initialize_ms is not None
    listed = tools is not None
    latency = initialize_ms + list_ms if initialized and listed else initialize_ms
    return HealthCheck(
        check_id=str(uuid.uuid4()),
        project_id=server.project_id,
        server_id=server.id,
        server_name=server.name,
        transport=server.transport,
        status=judge(initialized, listed, latency, server.degraded_after_ms),
        checked_at=checked_at.isoformat(),
        latency_ms=round(latency, 3) if latency is not None else None,
        initialize_ms=round(initialize_ms, 3) if initialize_ms is not None else None,
        list_tools_ms=round(list_ms, 3) if list_ms is not None else None,
        tool_count=len(tools) if listed else None,
        tools_hash=tools_hash(tools) if listed else None,
        tools=tool_fingerprints(tools) if listed else [],
        error=error,
        server_version=info.server_info.version if info is not None and info.server_info else None,
        protocol_version=info.protocol_version if info is not None else None,
        prober=prober,
    )
