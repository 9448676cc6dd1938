"""MCP server health checks: the `health.checks` record, the tool-schema hash and the status rule.

No I/O: the prober (spanstream/prober.py) fills these from what the MCP SDK returned, the stream
side (streams/health_checks.py) reads them back. docs/health-checks.md documents the shapes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

CheckStatus = Literal["up", "degraded", "down"]
STATUSES: tuple[str, ...] = ("up", "degraded", "down")
Transport = Literal["stdio", "sse", "streamable_http"]


def _canonical(value: Any) -> bytes:
    # Sorted keys, no whitespace, non-ASCII kept as is: the same schema always gives the same bytes.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tool_fingerprints(tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each tool's name and the hash of its (name, description, inputSchema), sorted by name:
    what tells drift apart into tools added, removed and changed."""
    out = []
    for tool in sorted(tools, key=lambda t: t["name"]):
        described = {"name": tool["name"], "description": tool.get("description"),
                     "inputSchema": tool.get("inputSchema") or {}}
        out.append({"name": tool["name"], "hash": hashlib.sha256(_canonical(described)).hexdigest()[:16]})
    return out


def tools_hash(tools: list[dict[str, Any]]) -> str:
    """A stable hash of the tool schemas: canonical JSON of name, description and inputSchema,
    sorted by name. Order of listing, key order and whitespace do not change it."""
    described = [{"name": t["name"], "description": t.get("description"), "inputSchema": t.get("inputSchema") or {}}
                 for t in sorted(tools, key=lambda t: t["name"])]
    return hashlib.sha256(_canonical(described)).hexdigest()


def judge(initialized: bool, listed: bool, latency_ms: float | None, degraded_after_ms: float) -> CheckStatus:
    """up: initialize and tools/list answered, no slower than the threshold; degraded: answered
    but slower, or tools/list failed after initialize; down: initialize never answered."""
    if not initialized:
        return "down"
    if not listed or latency_ms is None or latency_ms > degraded_after_ms:
        return "degraded"
    return "up"


@dataclass(frozen=True)
class HealthCheck:
    """One probe of one server: the `health.checks` record (keyed `project_id/server_name`)."""

    check_id: str
    project_id: str
    server_id: str
    server_name: str
    transport: str
    status: CheckStatus
    checked_at: str  # ISO 8601, UTC, when the probe started
    latency_ms: float | None  # initialize + tools/list round trips; None when initialize failed
    initialize_ms: float | None = None
    list_tools_ms: float | None = None
    tool_count: int | None = None
    tools_hash: str | None = None
    tools: list[dict[str, str]] = field(default_factory=list)  # tool_fingerprints
    error: str | None = None
    server_version: str | None = None
    protocol_version: str | None = None
    prober: str = ""
    schema_version: int = 1

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def check_key(project_id: str, server_name: str) -> bytes:
    """The Kafka key of a server's checks: one partition holds them all, in order."""
    return f"{project_id}/{server_name}".encode()
