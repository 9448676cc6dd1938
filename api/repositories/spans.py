"""Span reads from ClickHouse; always the collapsed (FINAL) view, so redelivered spans count once."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from spanstream.clickhouse import ClickHouseStore

_SPAN_FIELDS = """span_id, trace_id, session_id, parent_span_id, span_type, name, agent_name,
    server_name, tool_name, model_id, status, error, started_at, ended_at, latency_ms,
    input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens"""


async def recent_spans(
    store: ClickHouseStore, project_id: str, limit: int, session_id: str | None = None
) -> list[dict[str, Any]]:
    session_filter = "AND session_id = {session_id:String}" if session_id is not None else ""
    rows = await store.query(
        f"""SELECT {_SPAN_FIELDS} FROM spans FINAL
            WHERE project_id = {{project_id:String}} {session_filter}
            ORDER BY started_at DESC, span_id
            LIMIT {{limit:UInt32}}""",
        {"project_id": project_id, "session_id": session_id, "limit": limit},
    )
    for row in rows:
        # The driver returns naive datetimes for DateTime64(.., 'UTC') columns.
        row["started_at"] = row["started_at"].replace(tzinfo=UTC)
        row["ended_at"] = row["ended_at"].replace(tzinfo=UTC)
    return rows
