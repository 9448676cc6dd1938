"""Demo spans: one small agent session, so a new user sees something travel end to end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas.span import Span


def demo_session(project_id: str, now: datetime | None = None) -> list[Span]:
    """A support agent answering a question: an LLM plans, two MCP tools run (one fails and
    is retried), the LLM answers."""
    start = (now or datetime.now(UTC)) - timedelta(seconds=10)
    session = f"demo-{uuid.uuid4().hex[:12]}"
    root = f"{session}-root"

    def at(ms: int) -> datetime:
        return start + timedelta(milliseconds=ms)

    common = {"project_id": project_id, "session_id": session, "trace_id": session, "agent_name": "support-agent"}
    return [
        Span(**common, span_id=root, span_type="agent", name="support-agent", started_at=at(0), ended_at=at(4200)),
        Span(**common, span_id=f"{session}-plan", parent_span_id=root, span_type="llm", name="plan",
             model_id="claude-sonnet-4-5", started_at=at(10), ended_at=at(1210), input_tokens=1200,
             output_tokens=180, cache_read_tokens=800, finish_reason="tool_use"),
        Span(**common, span_id=f"{session}-search-1", parent_span_id=root, span_type="tool_call",
             name="search_docs", server_name="docs-mcp", tool_name="search_docs", started_at=at(1220),
             ended_at=at(1720), status="error", error="upstream timeout", input_args={"query": "refund policy"}),
        Span(**common, span_id=f"{session}-search-2", parent_span_id=root, span_type="tool_call",
             name="search_docs", server_name="docs-mcp", tool_name="search_docs", started_at=at(1730),
             ended_at=at(2130), input_args={"query": "refund policy"}, output_result={"hits": 3}),
        Span(**common, span_id=f"{session}-answer", parent_span_id=root, span_type="llm", name="answer",
             model_id="claude-sonnet-4-5", started_at=at(2140), ended_at=at(4190), input_tokens=2400,
             output_tokens=420, finish_reason="end_turn"),
    ]
