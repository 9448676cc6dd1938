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
    row.pop("by_tool", None)
    row.pop("by_hour", None)
    p50, p95, p99 = row.pop("latency")
    calls = row["calls"]
    row.update(p50_ms=p50, p95_ms=p95, p99_ms=p99, error_rate=row["failures"] / calls if calls else 0.0,
               last_call_at=row["last_call_at"].replace(tzinfo=UTC), last_status=row["last_status"] or None)
    if "hour" in row:
        row["hour"] = row["hour"].replace(tzinfo=UTC)
    return row


async def server_stats(reader: CappedReader, project_id: str, window: TimeWindow) -> list[dict[str, Any]]:
    """Stats per server."""
    rows = await reader.rows(
        f"""SELECT server_name, {_STATS} FROM mcp_server_stats WHERE {_IN_WINDOW}
            GROUP BY server_name ORDER BY server_name""",
        {"project_id": project_id, **window.parameters()},
    )
    return [_row(row) for row in rows]


async def server_detail(reader: CappedReader, project_id: str, window: TimeWindow,
                        server: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """One server's stats overall, per tool and per hour, in one scan (grouping sets); None if it had no calls."""
    rows = await reader.rows(
        f"""SELECT server_name, tool_name, hour, grouping(tool_name) AS by_hour, grouping(hour) AS by_tool, {_STATS}
            FROM mcp_server_stats WHERE {_IN_WINDOW} AND server_name = {{server:String}}
            GROUP BY GROUPING SETS ((server_name), (server_name, tool_name), (server_name, hour))
            ORDER BY by_hour, by_tool, tool_name, hour""",
        {"project_id": project_id, "server": server, **window.parameters()},
    )
    overall, tools, hours = None, [], []
    for row in rows:
        # grouping(x) is 1 when x was aggregated away in the row's set.
        by_hour, by_tool = row["by_hour"], row["by_tool"]
        if by_hour and by_tool:
            row.pop("tool_name"), row.pop("hour")
            overall = _row(row)
        elif by_tool:
            row.pop("hour")
            tools.append(_row(row))
        else:
            row.pop("tool_name")
            hours.append(_row(row))
    return overall, tools, hours
