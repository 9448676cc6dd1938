"""Rows as the session trace and list read them: each packed by ClickHouse into one JSON array
column, `trace_row` (migrations/clickhouse/0011_trace_rows.sql). A point lookup in chdb costs about
0.35 ms more for every column it reads, and a list reads its page's rows granule by granule, so
one packed column is much cheaper than twenty. The names below are the arrays' positions: the
contract with the migration, held by a test that compares every field with its own column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

# What the trace shows of a span, a session and a cost cell. The span payloads (arguments,
# results, prompts) stay out, so a page costs what its timing rows cost; times are µs.
SPAN_ROW = ("span_id", "parent_span_id", "trace_id", "span_type", "name", "agent_name", "target_agent_name",
            "server_name", "tool_name", "model_id", "status", "error", "started_at", "ended_at", "latency_ms",
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "thinking_tokens",
            "finish_reason")
SESSION_ROW = ("session_id", "version", "first_at", "last_at", "duration_ms", "spans", "llm_calls", "tool_calls",
               "failed_calls", "errors", "agents", "servers", "models", "input_tokens", "output_tokens",
               "cache_read_tokens", "cache_creation_tokens", "thinking_tokens", "cost_nano_usd", "unpriced_calls",
               "status")
COST_ROW = ("hour", "model_id", "agent_name", "server_name", "calls", "input_tokens", "output_tokens",
            "cache_read_tokens", "cache_creation_tokens", "thinking_tokens", "cost_nano_usd")
_MICROS = {"started_at", "ended_at", "first_at", "last_at"}
_FLOATS = {"latency_ms", "duration_ms"}
_TEXT = {"span_id", "parent_span_id", "trace_id", "span_type", "name", "agent_name", "target_agent_name",
         "server_name", "tool_name", "model_id", "status", "error", "finish_reason", "session_id"}
_LISTS = {"agents", "servers", "models"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unpack(packed: str, names: tuple[str, ...]) -> dict[str, Any]:
    """A packed row as the columns would have read: UTC datetimes, ints, floats and strings
    (coerced, so a store that quotes 64-bit integers in JSON reads the same)."""
    row: dict[str, Any] = {}
    for name, value in zip(names, orjson.loads(packed), strict=True):
        if name in _MICROS:
            value = _EPOCH + timedelta(microseconds=int(value))
        elif name == "hour":
            value = _EPOCH + timedelta(seconds=int(value))
        elif name in _FLOATS:
            value = float(value)
        elif name in _LISTS:
            value = list(value)
        elif name not in _TEXT:
            value = int(value)
        row[name] = value
    return row
