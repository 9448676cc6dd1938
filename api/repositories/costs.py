"""Cost rollups from `session_costs` (FINAL): each session's usage per hour, model, agent and server."""

from __future__ import annotations

from typing import Any

from api.reader import CappedReader
from api.window import TimeWindow

# group_by -> the session_costs column; the only names that reach the SQL text.
GROUPS = {"model": "model_id", "agent": "agent_name", "server": "server_name", "session": "session_id"}

# The cells are hourly: a window covers every hour it touches.
_IN_WINDOW = """project_id = {project_id:String}
    AND hour >= toStartOfHour(fromUnixTimestamp64Micro({window_start:Int64}, 'UTC'))
    AND hour <= fromUnixTimestamp64Micro({window_end:Int64}, 'UTC')"""
_SUMS = """sum(calls) AS calls, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(thinking_tokens) AS thinking_tokens, sum(cost_nano_usd) AS cost_nano_usd"""


async def cost_breakdown(reader: CappedReader, project_id: str, window: TimeWindow, group_by: str,
                         limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `limit` costliest groups, and the totals over all of them (`groups` counts them all).
    One scan: the grouping sets give the groups and the grand total together."""
    column = GROUPS[group_by]
    rows = await reader.rows(
        f"""SELECT {column} AS key, grouping({column}) AS is_total, uniqExact({column}) AS groups,
                   uniqExact(session_id) AS sessions, {_SUMS}
            FROM session_costs FINAL WHERE {_IN_WINDOW}
            GROUP BY GROUPING SETS (({column}), ())
            ORDER BY is_total DESC, cost_nano_usd DESC, key
            LIMIT {{limit:UInt32}}""",
        {"project_id": project_id, "limit": limit + 1, **window.parameters()},
    )
    if rows and rows[0]["is_total"]:
        totals, groups = rows[0], rows[1:]
    else:  # nothing in the window: no grand total row either
        totals = {"groups": 0, "sessions": 0, "calls": 0, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                  "cache_creation_tokens": 0, "thinking_tokens": 0, "cost_nano_usd": 0}
        groups = rows
    for row in groups:
        del row["is_total"], row["groups"]
    return groups, totals
