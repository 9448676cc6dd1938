"""MCP server health from `mcp_server_stats`, which a materialized view keeps per server, tool and hour."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from api.reader import CappedReader
from api.window import TimeWindow

_IN_WINDOW = """project_id = {project_id:String}
    AND hour >= toStartOfHour(fromUnixTimestamp64Micro({window_start:Int64}, 'UTC'))
    AND hour <= fromUnixTimestamp64Micro({window_end:Int64}, 'UTC')"""
_STATS = """uniqExactMerge(calls) AS calls, uniqExactIfMerge(failures) AS failures,
    uniqExactIfMerge(timeouts) AS timeouts, quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_ms) AS latency,
    max(last_call_at) AS last_call_at, argMaxMerge(last_status) AS last_status"""


def _row(row: dict[str, Any]) -> dict[str, Any]:
    p50, p95, p99 = row.pop("latency")
    calls = row["calls"]
    row.update(p50_ms=p50, p95_ms=p95, p99_ms=p99, error_rate=row["failures"] / calls if calls else 0.0,
               last_call_at=row["last_call_at"].replace(tzinfo=UTC), last_status=row["last_status"] or None)
    if "hour" in row:
        row["hour"] = row["hour"].replace(tzinfo=UTC)
    return row


async def server_stats(reader: CappedReader, project_id: str, window: TimeWindow,
                       server: str | None = None, by: str = "server_name") -> list[dict[str, Any]]:
    """Stats per server (by='server_name'), or for one server per tool ('tool_name') or per hour ('hour')."""
    group = {"server_name": "server_name", "tool_name": "server_name, tool_name", "hour": "server_name, hour"}[by]
    only = " AND server_name = {server:String}" if server is not None else ""
    rows = await reader.rows(
        f"""SELECT {group}, {_STATS} FROM mcp_server_stats WHERE {_IN_WINDOW}{only}
            GROUP BY {group} ORDER BY {group}""",
        {"project_id": project_id, "server": server, **window.parameters()},
    )
    return [_row(row) for row in rows]
