"""What the engine reads from Kafka, and the incidents each rule kind opens. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

SERVER_STATUSES = ("up", "degraded", "down")


@dataclass(frozen=True)
class SessionTagged:
    """A `health` record: a session's health tag changed (streams/session_step.py)."""

    project_id: UUID
    session_id: str
    version: int
    health_tag: str
    previous_tag: str | None
    at: str


@dataclass(frozen=True)
class ServerChecked:
    """A `health.checks` record: one probe of one MCP server (schemas/health_check.py)."""

    project_id: UUID
    server_name: str
    status: str
    checked_at: datetime
    error: str | None = None


@dataclass(frozen=True)
class Opening:
    """An incident a rule wants open. `dedup_key` names the condition (one open incident per
    rule and key); `source_event` names a one-off event, so its redelivery opens nothing."""

    dedup_key: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    source_event: str | None = None
    # A recovery is news, not a problem: it opens already resolved and is never repeated.
    born_resolved: bool = False


def _object(value: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def parse_health_change(value: bytes) -> SessionTagged | None:
    """None for anything that is not a well-formed tag change: the engine skips it."""
    record = _object(value)
    if record is None:
        return None
    project_id, session_id, tag = _uuid(record.get("project_id")), record.get("session_id"), record.get("health_tag")
    version = record.get("version")
    if project_id is None or not isinstance(session_id, str) or not session_id or not isinstance(tag, str) \
            or not isinstance(version, int) or isinstance(version, bool):
        return None
    previous = record.get("previous_tag")
    return SessionTagged(project_id, session_id, version, tag, previous if isinstance(previous, str) else None,
                         str(record.get("at") or ""))


def parse_health_check(value: bytes) -> ServerChecked | None:
    record = _object(value)
    if record is None:
        return None
    project_id, name, status = _uuid(record.get("project_id")), record.get("server_name"), record.get("status")
    if project_id is None or not isinstance(name, str) or not name or status not in SERVER_STATUSES:
        return None
    try:
        checked_at = datetime.fromisoformat(str(record.get("checked_at")))
    except ValueError:
        return None
    if checked_at.tzinfo is None:
        checked_at = checked_at.replace(tzinfo=UTC)
    error = record.get("error")
    return ServerChecked(project_id, name, status, checked_at, error if isinstance(error, str) else None)


def session_key(session_id: str, health_tag: str) -> str:
    return f"session:{session_id}:{health_tag}"


def session_opening(event: SessionTagged) -> Opening:
    return Opening(
        dedup_key=session_key(event.session_id, event.health_tag),
        summary=f"session {event.session_id} tagged {event.health_tag}",
        details={"session_id": event.session_id, "health_tag": event.health_tag,
                 "previous_tag": event.previous_tag, "version": event.version, "at": event.at},
        source_event=f"session:{event.session_id}@{event.version}",
    )


def server_key(server_name: str) -> str:
    return f"server:{server_name}"


def server_down_opening(event: ServerChecked) -> Opening:
    return Opening(
        dedup_key=server_key(event.server_name),
        summary=f"MCP server {event.server_name} is down",
        details={"server_name": event.server_name, "status": event.status,
                 "checked_at": event.checked_at.isoformat(), "error": event.error},
    )


def server_recovered_opening(event: ServerChecked) -> Opening:
    return Opening(
        dedup_key=f"{server_key(event.server_name)}:recovered",
        summary=f"MCP server {event.server_name} recovered ({event.status})",
        details={"server_name": event.server_name, "status": event.status,
                 "checked_at": event.checked_at.isoformat()},
        source_event=f"{server_key(event.server_name)}@{event.checked_at.isoformat()}",
        born_resolved=True,
    )


def rule_watches_server(rule: dict[str, Any], server_name: str) -> bool:
    return rule["server_name"] is None or rule["server_name"] == server_name


def slo_key(slo_id: UUID) -> str:
    return f"slo:{slo_id}"


def cost_key(rule: dict[str, Any]) -> str:
    return f"cost:{rule['window_hours']}h"
