"""A session's spans for its trace view: the whole tree's shape, and one page of spans in start order."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from api.reader import CappedReader
from api.repositories.sessions import SESSION_FIELDS, judged_now, session_out

# Everything the trace shows of a span; the payloads (arguments, results, prompts) stay out of
# the trace so that a page costs what its timing rows cost.
_SPAN_FIELDS = """span_id, parent_span_id, trace_id, span_type, name, agent_name, target_agent_name,
    server_name, tool_name, model_id, status, error, started_at, ended_at, latency_ms, input_tokens,
    output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens, finish_reason"""
_COST_NAMES = ["hour", "model_id", "agent_name", "server_name", "calls", "input_tokens", "output_tokens",
               "cache_read_tokens", "cache_creation_tokens", "thinking_tokens", "cost_nano_usd"]
_SESSION = "project_id = {project_id:String} AND session_id = {session_id:String}"
_KEYSET = "AND (started_at, span_id) > (fromUnixTimestamp64Micro({after_at:Int64}, 'UTC'), {after_id:String})"


async def session_trace(
    reader: CappedReader, project_id: str, session_id: str, incomplete_after: float, after: list | None, limit: int
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The session with its cost cells, and up to `limit` of its spans ordered by (started_at,
    span_id) after the keyset `after` ([started_at in µs, span id]); None if there is no such
    session. Three point lookups at once: the store reads on several connections, so the trace
    waits for the slowest of them, not for their sum (each is mostly ClickHouse's per-query
    planning, ~5-10 ms here, whatever the granule size)."""
    key = {"project_id": project_id, "session_id": session_id}
    parameters: dict[str, Any] = {**key, "limit": limit}
    keyset = ""
    if after is not None:
        keyset = _KEYSET
        parameters.update(after_at=after[0], after_id=after[1])
    rows, cells, spans = await asyncio.gather(
        reader.rows(f"SELECT {SESSION_FIELDS} FROM sessions FINAL WHERE {_SESSION}",
                    {**key, **judged_now(incomplete_after)}, point_lookup=True),
        reader.rows(f"SELECT {', '.join(_COST_NAMES)} FROM session_costs FINAL WHERE {_SESSION}", key,
                    point_lookup=True),
        reader.rows(f"""SELECT {_SPAN_FIELDS} FROM spans FINAL WHERE {_SESSION} {keyset}
                        ORDER BY started_at, span_id LIMIT {{limit:UInt32}}""", parameters, point_lookup=True),
    )
    if not rows:
        return None
    row = rows[0]
    costs = sorted(cells, key=lambda c: (c["hour"], c["model_id"], c["agent_name"], c["server_name"]))
    for cell in costs:
        cell["hour"] = cell["hour"].replace(tzinfo=UTC)
    for span in spans:
        # The driver returns naive datetimes for DateTime64(.., 'UTC') columns.
        span["started_at"] = span["started_at"].replace(tzinfo=UTC)
        span["ended_at"] = span["ended_at"].replace(tzinfo=UTC)
    spans.sort(key=lambda span: (span["started_at"], span["span_id"]))
    return {**session_out(row), "costs": costs}, spans


async def span_parents(reader: CappedReader, project_id: str, session_id: str) -> dict[str, str]:
    """span id -> parent span id ('' for none) of every span of the session."""
    rows = await reader.rows(
        """SELECT span_id, parent_span_id FROM spans FINAL
           WHERE project_id = {project_id:String} AND session_id = {session_id:String}""",
        {"project_id": project_id, "session_id": session_id}, point_lookup=True,
    )
    return {row["span_id"]: row["parent_span_id"] for row in rows}
