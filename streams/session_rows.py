"""ClickHouse rows for the derived topics: `sessions` records and `health` changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.span import TOKEN_FIELDS

SESSION_COLUMNS = (
    "project_id", "session_id", "version", "first_at", "last_at", "duration_ms", "spans", "llm_calls",
    "tool_calls", "failed_calls", "errors", "agents", "servers", "models", *TOKEN_FIELDS, "cost_nano_usd",
    "unpriced_calls", "health_tag", "status",
)
COST_COLUMNS = (
    "project_id", "session_id", "hour", "model_id", "agent_name", "server_name", "version", "calls",
    *TOKEN_FIELDS, "cost_nano_usd",
)
HEALTH_COLUMNS = ("project_id", "session_id", "version", "health_tag", "previous_tag", "at")
_TIMES = ("first_at", "last_at", "hour", "at")


def _value(name: str, value: Any) -> Any:
    return datetime.fromisoformat(value) if name in _TIMES else value


def session_row(record: dict[str, Any]) -> list:
    return [_value(name, record[name]) for name in SESSION_COLUMNS]


def cost_rows(record: dict[str, Any]) -> list[list]:
    head = {"project_id": record["project_id"], "session_id": record["session_id"], "version": record["version"]}
    return [[_value(name, {**head, **cell}[name]) for name in COST_COLUMNS] for cell in record["costs"]]


def health_row(change: dict[str, Any]) -> list:
    return [_value(name, change[name]) for name in HEALTH_COLUMNS]
