"""Session reads: the `sessions` view the worker materialized, never a GROUP BY over raw spans."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from spanstream.clickhouse import ClickHouseStore

_FIELDS = """session_id, version, first_at, last_at, duration_ms, spans, llm_calls, tool_calls,
    failed_calls, errors, agents, servers, models, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, thinking_tokens, cost_nano_usd, unpriced_calls, status,
    -- `incomplete` is judged when read: an open session that otherwise looks healthy and has
    -- had no span for the configured time (docs/health-tags.md).
    if(status = 'open' AND health_tag IN ('success', 'success_with_fallback')
       AND last_at < now64(6) - toIntervalSecond({incomplete_after:UInt64}), 'incomplete', health_tag) AS tag"""


def _utc(row: dict[str, Any], *names: str) -> dict[str, Any]:
    # The driver returns naive datetimes for DateTime64(.., 'UTC') columns.
    for name in names:
        row[name] = row[name].replace(tzinfo=UTC)
    return row


async def list_sessions(
    store: ClickHouseStore, project_id: str, hours: float, limit: int, incomplete_after: float,
    health_tag: str | None = None,
) -> list[dict[str, Any]]:
    tag_filter = "AND tag = {health_tag:String}" if health_tag else ""
    rows = await store.query(
        f"""SELECT {_FIELDS} FROM sessions FINAL
            WHERE project_id = {{project_id:String}}
              AND last_at >= now64(6) - toIntervalSecond({{seconds:UInt64}}) {tag_filter}
            ORDER BY last_at DESC, session_id
            LIMIT {{limit:UInt32}}""",
        {"project_id": project_id, "seconds": int(hours * 3600), "limit": limit, "health_tag": health_tag,
         "incomplete_after": int(incomplete_after)},
    )
    return [_tagged(_utc(row, "first_at", "last_at")) for row in rows]


def _tagged(row: dict[str, Any]) -> dict[str, Any]:
    row["health_tag"] = row.pop("tag")
    return row


async def get_session(
    store: ClickHouseStore, project_id: str, session_id: str, incomplete_after: float
) -> dict[str, Any] | None:
    rows = await store.query(
        f"""SELECT {_FIELDS} FROM sessions FINAL
            WHERE project_id = {{project_id:String}} AND session_id = {{session_id:String}}""",
        {"project_id": project_id, "session_id": session_id, "incomplete_after": int(incomplete_after)},
    )
    if not rows:
        return None
    costs = await store.query(
        """SELECT hour, model_id, agent_name, server_name, calls, input_tokens, output_tokens,
                  cache_read_tokens, cache_creation_tokens, thinking_tokens, cost_nano_usd
           FROM session_costs FINAL
           WHERE project_id = {project_id:String} AND session_id = {session_id:String}
           ORDER BY hour, model_id, agent_name, server_name""",
        {"project_id": project_id, "session_id": session_id},
    )
    return {**_tagged(_utc(rows[0], "first_at", "last_at")), "costs": [_utc(cost, "hour") for cost in costs]}


async def summarize_sessions(store: ClickHouseStore, project_id: str, hours: float) -> dict[str, Any]:
    rows = await store.query(
        """SELECT count() AS sessions, sum(spans) AS spans, sum(cost_nano_usd) AS cost_nano_usd,
                  countIf(status = 'open') AS open_sessions
           FROM sessions FINAL
           WHERE project_id = {project_id:String} AND last_at >= now64(6) - toIntervalSecond({seconds:UInt64})""",
        {"project_id": project_id, "seconds": int(hours * 3600)},
    )
    return rows[0]
