"""Agents seen in a window: each agent's sessions, spans and cost from `session_costs`, its last
activity from `sessions` (the cost cells are hourly; a session's last_at is exact)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from api.reader import CappedReader
from api.window import TimeWindow


async def agents_seen(reader: CappedReader, project_id: str, window: TimeWindow) -> list[dict[str, Any]]:
    parameters = {"project_id": project_id, **window.parameters()}
    totals = await reader.rows(
        """SELECT agent_name, uniqExact(session_id) AS sessions, sum(calls) AS spans, sum(cost_nano_usd) AS cost_nano_usd
           FROM session_costs FINAL
           WHERE project_id = {project_id:String} AND agent_name != ''
             AND hour >= toStartOfHour(fromUnixTimestamp64Micro({window_start:Int64}, 'UTC'))
             AND hour <= fromUnixTimestamp64Micro({window_end:Int64}, 'UTC')
           GROUP BY agent_name""",
        parameters,
    )
    last = await reader.rows(
        """SELECT agent, max(last_at) AS latest FROM sessions FINAL ARRAY JOIN agents AS agent
           WHERE project_id = {project_id:String}
             AND last_at >= fromUnixTimestamp64Micro({window_start:Int64}, 'UTC')
             AND first_at <= fromUnixTimestamp64Micro({window_end:Int64}, 'UTC')
           GROUP BY agent""",
        parameters,
    )
    last_at = {row["agent"]: row["latest"].replace(tzinfo=UTC) for row in last}
    return sorted(({**row, "last_at": last_at.get(row["agent_name"])} for row in totals),
                  key=lambda row: (row["last_at"] is None, -(row["last_at"].timestamp() if row["last_at"] else 0),
                                   row["agent_name"]))
