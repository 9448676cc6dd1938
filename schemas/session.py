"""Session v1: what the `sessions` topic carries, one record per change of a session."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

HEALTH_TAGS = (
    "loop_detected",
    "budget_exceeded",
    "circuit_breaker_open",
    "schema_drift",
    "timeout",
    "tool_failure",
    "incomplete",
    "success_with_fallback",
    "success",
)
HealthTag = Literal[HEALTH_TAGS]  # type: ignore[valid-type]


class CostCell(BaseModel):
    """A session's usage and cost in one hour, for one model, agent and MCP server."""

    hour: datetime
    model_id: str
    agent_name: str
    server_name: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int
    cost_nano_usd: int


class SessionFields(BaseModel):
    """What a session is, as readers see it."""

    session_id: str
    version: int
    first_at: datetime
    last_at: datetime
    duration_ms: float
    spans: int
    llm_calls: int
    tool_calls: int
    failed_calls: int
    errors: int
    agents: list[str]
    servers: list[str]
    models: list[str]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int
    cost_nano_usd: int
    unpriced_calls: int
    health_tag: HealthTag
    status: Literal["open", "closed"]


class SessionRecord(SessionFields):
    """The latest state of a session, on the `sessions` topic. `version` grows with every
    change, so any store keyed by (project_id, session_id) keeps the record with the highest
    version; replaying the topics yields the same records with the same versions."""

    project_id: str
    costs: list[CostCell]
