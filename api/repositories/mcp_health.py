"""MCP server health as the health-check sink wrote it to ClickHouse (streams/health_checks.py),
read with the query layer's caps (api/reader.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.reader import CappedReader

_CHECK_FIELDS = """check_id, checked_at, status, latency_ms, initialize_ms, list_tools_ms, tool_count,
    tools_hash, tool_names, error, server_version, protocol_version, transport, prober"""
_EVENT_FIELDS = """check_id, at, kind, previous_check_id, status, previous_status, old_hash, new_hash,
    tools_added, tools_removed, tools_changed, error"""


def _utc(row: dict[str, Any], *names: str) -> dict[str, Any]:
    # The driver returns naive datetimes for DateTime64(.., 'UTC') columns.
    for name in names:
        if row.get(name) is not None:
            row[name] = row[name].replace(tzinfo=UTC)
    return row


async def latest_health(reader: CappedReader, project_id: str, server_names: list[str]) -> dict[str, dict[str, Any]]:
    """Each named server's latest check, by name (servers never checked are absent)."""
    if not server_names:
        return {}
    rows = await reader.rows(
        """SELECT server_name, check_id, checked_at, status, latency_ms, tool_count, tools_hash, error,
                  status_since, last_up_at
           FROM mcp_server_health FINAL
           WHERE project_id = {project_id:String} AND server_name IN {names:Array(String)}""",
        {"project_id": project_id, "names": server_names},
    )
    return {row.pop("server_name"): _utc(row, "checked_at", "status_since", "last_up_at") for row in rows}


async def list_checks(
    reader: CappedReader, project_id: str, server_name: str, before: tuple[datetime, str] | None,
    limit: int, status: str | None = None,
) -> list[dict[str, Any]]:
    """Checks newest first, strictly before the (checked_at, check_id) position `before`."""
    rows = await reader.rows(
        f"""SELECT {_CHECK_FIELDS} FROM mcp_health_checks FINAL
            WHERE project_id = {{project_id:String}} AND server_name = {{server:String}}
              AND ({{status:Nullable(String)}} IS NULL OR status = {{status:Nullable(String)}})
              AND ({{first_page:Bool}} OR (checked_at, check_id) < ({{at:DateTime64(6, 'UTC')}}, {{id:String}}))
            ORDER BY checked_at DESC, check_id DESC
            LIMIT {{limit:UInt32}}""",
        {"project_id": project_id, "server": server_name, "status": status, "first_page": before is None,
         "at": before[0] if before else datetime(1970, 1, 1, tzinfo=UTC), "id": before[1] if before else "",
         "limit": limit},
    )
    return [_utc(row, "checked_at") for row in rows]


async def list_events(
    reader: CappedReader, project_id: str, server_name: str, before: tuple[datetime, str, str] | None,
    limit: int, kind: str | None = None,
) -> list[dict[str, Any]]:
    """Drift and status-change events newest first, strictly before the (at, check_id, kind)
    position `before` (one check can cause two events: drift, and a status change)."""
    rows = await reader.rows(
        f"""SELECT {_EVENT_FIELDS} FROM mcp_health_events FINAL
            WHERE project_id = {{project_id:String}} AND server_name = {{server:String}}
              AND ({{kind:Nullable(String)}} IS NULL OR kind = {{kind:Nullable(String)}})
              AND ({{first_page:Bool}}
                   OR (at, check_id, kind) < ({{at:DateTime64(6, 'UTC')}}, {{id:String}}, {{after_kind:String}}))
            ORDER BY at DESC, check_id DESC, kind DESC
            LIMIT {{limit:UInt32}}""",
        {"project_id": project_id, "server": server_name, "kind": kind, "first_page": before is None,
         "at": before[0] if before else datetime(1970, 1, 1, tzinfo=UTC), "id": before[1] if before else "",
         "after_kind": before[2] if before else "", "limit": limit},
    )
    return [_utc(row, "at") for row in rows]
