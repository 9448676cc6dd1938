"""A session's spans for its trace view: the whole tree's shape, and one page of spans in start order."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from api.reader import CappedReader

# Everything the trace shows of a span; the payloads (arguments, results, prompts) stay out of
# the trace so that a page costs what its timing rows cost.
_SPAN_FIELDS = """span_id, parent_span_id, trace_id, span_type, name, agent_name, target_agent_name,
    server_name, tool_name, model_id, status, error, started_at, ended_at, latency_ms, input_tokens,
    output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens, finish_reason"""


async def span_parents(reader: CappedReader, project_id: str, session_id: str) -> dict[str, str]:
    """span id -> parent span id ('' for none) of every span of the session."""
    rows = await reader.rows(
        """SELECT span_id, parent_span_id FROM spans FINAL
           WHERE project_id = {project_id:String} AND session_id = {session_id:String}""",
        {"project_id": project_id, "session_id": session_id},
    )
    return {row["span_id"]: row["parent_span_id"] for row in rows}


async def span_page(
    reader: CappedReader, project_id: str, session_id: str, after: list | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` spans ordered by (started_at, span_id), after the keyset `after`
    ([started_at in µs, span id])."""
    keyset = ""
    parameters: dict[str, Any] = {"project_id": project_id, "session_id": session_id, "limit": limit}
    if after is not None:
        keyset = "AND (started_at, span_id) > (fromUnixTimestamp64Micro({after_at:Int64}, 'UTC'), {after_id:String})"
        parameters.update(after_at=after[0], after_id=after[1])
    rows = await reader.rows(
        f"""SELECT {_SPAN_FIELDS} FROM spans FINAL
            WHERE project_id = {{project_id:String}} AND session_id = {{session_id:String}} {keyset}
            ORDER BY started_at, span_id
            LIMIT {{limit:UInt32}}""",
        parameters,
    )
    for row in rows:
        # The driver returns naive datetimes for DateTime64(.., 'UTC') columns.
        row["started_at"] = row["started_at"].replace(tzinfo=UTC)
        row["ended_at"] = row["ended_at"].replace(tzinfo=UTC)
    return rows
