"""Replay's insert bodies: the live sink's rows, encoded as ClickHouse JSONCompactColumns by the
worker that built them.

clickhouse-connect turns Python rows into its Native format in Python, ~15 µs a span, in the
one process that may open chdb; orjson writes a whole batch as one JSON document in ~2 µs a
span, and ClickHouse parses it in C++. The values are the ones the live
sink writes (streams.sink.span_row, streams.session_rows) and none is changed on the way:
strings and integers are exact, floats are written shortest-round-trip, times as RFC 3339 with
microseconds. What JSON cannot carry exactly (a non-finite float, an integer past UInt64, a time
outside the column type's range) makes `encode_columns` return None, and those rows go to
ClickHouse the usual way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from schemas.span import TOKEN_FIELDS, Span

FORMAT = "JSONCompactColumns"
# One JSON array per row and line: bodies of it concatenate into one insert.
ROWS_FORMAT = "JSONCompactEachRow"
# One JSON object per row and line: a `sessions` record or `health` change as the fold wrote it.
RECORDS_FORMAT = "JSONEachRow"
# RFC 3339 with a `T` and an offset, as orjson writes it, is ClickHouse's best-effort syntax.
SETTINGS = {"date_time_input_format": "best_effort"}
# Without the replacing step on insert: a fifth of each spans insert went to it, and it changes no
# view (readers use FINAL, the MCP statistics count distinct span ids, and a view sees duplicates
# within a block all the same, since it gets the block as inserted).
INSERT_SETTINGS = {**SETTINGS, "optimize_on_insert": "0"}
# A record's keys that are no column (a session's `costs`, a change's `agents`) are left out.
RECORD_SETTINGS = {**SETTINGS, "input_format_skip_unknown_fields": "1"}

# DateTime64 reads 1900-2299 and DateTime 1970-2106 back as written; times outside go the usual way.
_TIME_RANGES = {
    **dict.fromkeys(("started_at", "ended_at", "first_at", "last_at", "at"),
                    (datetime(1900, 1, 2, tzinfo=UTC), datetime(2299, 12, 31, tzinfo=UTC))),
    "hour": (datetime(1970, 1, 1, tzinfo=UTC), datetime(2106, 1, 1, tzinfo=UTC)),
}
_FLOATS = frozenset(("latency_ms", "duration_ms"))
# The same encoder json.dumps(attributes, separators=(",", ":"), default=str) builds per call.
_attributes_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


# The spans table's columns as span_values and streams.sink.span_row give them. Here, not in
# streams.sink, so that a replay worker imports no ClickHouse driver (a third of its start).
SPAN_COLUMNS = (
    "project_id", "session_id", "trace_id", "span_id", "parent_span_id", "span_type", "name",
    "agent_name", "target_agent_name", "server_name", "tool_name", "model_id", "status", "error",
    "started_at", "ended_at", "latency_ms", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_creation_tokens", "thinking_tokens", "finish_reason", "input_args", "output_result",
    "llm_input", "llm_output", "attributes", "schema_version", "truncated_fields",
)


def span_values(span: Span) -> list:
    """streams.sink.span_row, value for value, without building a JSON encoder per span."""
    f = span.__dict__
    started = f["started_at"]
    attributes = f["attributes"]
    return [
        f["project_id"], f["session_id"], f["trace_id"], f["span_id"], f["parent_span_id"] or "",
        f["span_type"], f["name"], f["agent_name"] or "", f["target_agent_name"] or "",
        f["server_name"] or "", f["tool_name"] or "", f["model_id"] or "", f["status"],
        f["error"] or "", started, f["ended_at"] or started, f["latency_ms"] or 0.0,
        f["input_tokens"], f["output_tokens"], f["cache_read_tokens"], f["cache_creation_tokens"],
        f["thinking_tokens"], f["finish_reason"] or "", f["input_args"] or "",
        f["output_result"] or "", f["llm_input"] or "", f["llm_output"] or "",
        _attributes_json(attributes) if attributes else "{}", f["schema_version"],
        f["truncated_fields"],
    ]


def cost_values(record: dict) -> list[list]:
    """streams.session_rows.cost_rows, value for value, without merging two dicts per value."""
    head = (record["project_id"], record["session_id"])
    version = record["version"]
    return [[*head, datetime.fromisoformat(cell["hour"]), cell["model_id"], cell["agent_name"], cell["server_name"],
             version, cell["calls"], *(cell[name] for name in TOKEN_FIELDS), cell["cost_nano_usd"]]
            for cell in record["costs"]]


def encode_columns(columns: Sequence[str], rows: Sequence[Sequence]) -> bytes | None:
    """`rows` (in `columns` order) as one JSONCompactColumns body, or None when some value
    would not come back from ClickHouse exactly as clickhouse-connect would have written it."""
    return encode_column_values(columns, list(zip(*rows)))


def encode_column_values(columns: Sequence[str], values: Sequence[Sequence]) -> bytes | None:
    """`encode_columns` for values already in columns (each a sequence of one column's values)."""
    for name, column in zip(columns, values):
        bounds = _TIME_RANGES.get(name)
        if bounds is not None and (min(column) < bounds[0] or max(column) >= bounds[1]):
            return None
        if name in _FLOATS and not all(map(math.isfinite, column)):
            return None
    try:
        return orjson.dumps(values)
    except orjson.JSONEncodeError:  # an integer past 64 bits
        return None


def encode_span_rows(spans: Sequence[Span], max_bytes: int) -> list[bytes]:
    """The spans-table rows of `spans` (streams.sink.span_row, value for value) as
    JSONCompactEachRow bodies of about `max_bytes` each (a single row can pass it). Span
    validation keeps every value within what JSON carries exactly (schemas.span: times in
    1970–2105, finite latency, bounded token counts)."""
    bodies = SpanRowBodies(max_bytes)
    bodies.add(spans)
    return bodies.finish()


class SpanRowBodies:
    """`encode_span_rows` a message at a time: the same bodies, for a caller that encodes each
    message's rows while its spans are fresh (streams/frame_step.py)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bodies: list[bytes] = []
        self._lines: list[bytes] = []
        self._size = 0

    def add(self, spans: Sequence[Span]) -> None:
        lines, size, max_bytes = self._lines, self._size, self.max_bytes
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        for span in spans:
            line = dumps(span_values(span), option=newline)
            if lines and size + len(line) > max_bytes:
                self._bodies.append(b"".join(lines))
                lines, size = [], 0
            lines.append(line)
            size += len(line)
        self._lines, self._size = lines, size

    def finish(self) -> list[bytes]:
        """The bodies of every span added."""
        if self._lines:
            self._bodies.append(b"".join(self._lines))
            self._lines, self._size = [], 0
        return self._bodies


def encode_cost_rows(record: dict) -> bytes:
    """A `sessions` record's session_costs rows (cost_values) as a JSONCompactEachRow body. The
    fold wrote the record with orjson, so every value is one JSON carries exactly: hours within
    the spans' storable range, integers within 64 bits."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join(dumps(row, option=newline) for row in cost_values(record))
