"""Rows written straight into ClickHouse, shaped as the worker writes them, for query-layer tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from api.repositories.projects import create_api_key, ensure_project
from schemas.span import Span
from spanstream.clickhouse import ClickHouseStore
from streams.session_rows import COST_COLUMNS, SESSION_COLUMNS
from streams.sink import SPAN_COLUMNS, span_row

NOW = datetime.now(UTC).replace(microsecond=0)


async def new_project(dsn: str, prefix: str, roles: tuple[str, ...] = ("admin",)) -> tuple[str, dict[str, str]]:
    """A fresh project and one key per role asked for: (project id, {role: key})."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        project = await ensure_project(pool, f"{prefix}-{uuid.uuid4().hex[:8]}")
        return str(project.id), {role: await create_api_key(pool, project.id, role, role) for role in roles}
    finally:
        await pool.close()


def seed_spans(store: ClickHouseStore, spans: list[Span]) -> None:
    store.insert_sync("spans", [span_row(span) for span in spans], SPAN_COLUMNS)


def tool_call(project_id: str, session_id: str, started_at: datetime, latency_ms: float, **fields: Any) -> Span:
    return Span(project_id=project_id, session_id=session_id, span_id=fields.pop("span_id", uuid.uuid4().hex),
                span_type="tool_call", server_name=fields.pop("server_name", "docs-mcp"),
                tool_name=fields.pop("tool_name", "search"), started_at=started_at,
                ended_at=started_at + timedelta(milliseconds=latency_ms), latency_ms=latency_ms, **fields)


def seed_session(store: ClickHouseStore, project_id: str, session_id: str, last_at: datetime, **fields: Any) -> dict:
    row = {
        "project_id": project_id, "session_id": session_id, "version": 1, "first_at": last_at - timedelta(seconds=5),
        "last_at": last_at, "duration_ms": 5000.0, "spans": 2, "llm_calls": 1, "tool_calls": 1, "failed_calls": 0,
        "errors": 0, "agents": ["planner"], "servers": ["docs-mcp"], "models": ["gpt-4o"], "input_tokens": 0,
        "output_tokens": 0, "cache_read_tokens": 0, "cache_creation_tokens": 0, "thinking_tokens": 0,
        "cost_nano_usd": 0, "unpriced_calls": 0, "health_tag": "success", "status": "closed", **fields,
    }
    store.insert_sync("sessions", [[row[name] for name in SESSION_COLUMNS]], SESSION_COLUMNS)
    return row


def seed_cost(store: ClickHouseStore, project_id: str, session_id: str, hour: datetime, cost_nano_usd: int,
              agent_name: str = "planner", model_id: str = "gpt-4o", **fields: Any) -> dict:
    row = {
        "project_id": project_id, "session_id": session_id, "hour": hour.replace(minute=0, second=0, microsecond=0),
        "model_id": model_id, "agent_name": agent_name, "server_name": "", "version": 1, "calls": 1,
        "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_creation_tokens": 0,
        "thinking_tokens": 0, "cost_nano_usd": cost_nano_usd, **fields,
    }
    store.insert_sync("session_costs", [[row[name] for name in COST_COLUMNS]], COST_COLUMNS)
    return row
