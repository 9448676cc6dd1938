"""The current value of an SLO, from the views the worker materialized (definitions: docs/analytics.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanstream.clickhouse import ClickHouseStore

NANO = 1_000_000_000

# Settled sessions: closed, or open with no span for `incomplete_after` (read as `incomplete`, a
# failure). Sessions still running are left out: their outcome is not known yet.
_SUCCESS_RATE = """
    SELECT countIf(status = 'closed' AND health_tag IN ('success', 'success_with_fallback')) AS good,
           count() AS settled
    FROM sessions FINAL
    WHERE project_id = {project_id:String}
      AND last_at >= now64(6) - toIntervalSecond({seconds:UInt64})
      AND (status = 'closed' OR last_at < now64(6) - toIntervalSecond({incomplete_after:UInt64}))
      AND ({agent:String} = '' OR has(agents, {agent:String}))
"""
# Project-wide from the hourly MCP stats (cheap; whole hours overlapping the window); per agent
# from the spans, since the stats carry no agent. Both estimate p99 with a t-digest.
_P99_PROJECT = """
    SELECT quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_ms)[3] AS p99, uniqExactMerge(calls) AS calls
    FROM mcp_server_stats
    WHERE project_id = {project_id:String} AND hour >= toStartOfHour(now() - toIntervalSecond({seconds:UInt64}))
"""
_P99_AGENT = """
    SELECT quantileTDigest(0.99)(latency_ms) AS p99, count() AS calls
    FROM spans FINAL
    WHERE project_id = {project_id:String} AND span_type = 'tool_call' AND server_name != ''
      AND agent_name = {agent:String} AND started_at >= now64(6) - toIntervalSecond({seconds:UInt64})
"""
# Cost by the hours overlapping the window, from each session's hourly cost cells.
_COST = """
    SELECT sum(cost_nano_usd) AS cost_nano_usd, count() AS cells
    FROM session_costs FINAL
    WHERE project_id = {project_id:String} AND hour >= toStartOfHour(now() - toIntervalSecond({seconds:UInt64}))
      AND ({agent:String} = '' OR agent_name = {agent:String})
"""


@dataclass(frozen=True)
class SloReading:
    state: str  # ok, breached or no_data
    value: float | None
    # What the value was computed over: settled sessions, tool calls or cost cells.
    sample: int


async def read_slo(store: ClickHouseStore, project_id: str, slo: dict[str, Any], incomplete_after: float) -> SloReading:
    params = {"project_id": project_id, "seconds": max(1, round(slo["window_hours"] * 3600)),
              "agent": slo["agent_name"] or "", "incomplete_after": int(incomplete_after)}
    kind, target = slo["kind"], slo["target"]
    if kind == "success_rate":
        [row] = await store.query(_SUCCESS_RATE, params)
        if row["settled"] == 0:
            return SloReading("no_data", None, 0)
        value = 100.0 * row["good"] / row["settled"]
        return SloReading("breached" if value < target else "ok", value, row["settled"])
    if kind == "p99_latency":
        [row] = await store.query(_P99_AGENT if slo["agent_name"] else _P99_PROJECT, params)
        if row["calls"] == 0:
            return SloReading("no_data", None, 0)
        value = float(row["p99"])
        return SloReading("breached" if value > target else "ok", value, row["calls"])
    [row] = await store.query(_COST, params)
    if row["cells"] == 0:
        return SloReading("no_data", None, 0)
    value = row["cost_nano_usd"] / NANO
    return SloReading("breached" if value > target else "ok", value, row["cells"])
