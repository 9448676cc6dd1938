"""Span v1 validation: what producers send and what they get back."""

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.span import decode_span, encode_span

BASE = {"project_id": "p1", "span_id": "s1", "started_at": "2026-01-01T10:00:00Z"}


def span(**fields):
    return decode_span(json.dumps({**BASE, **fields}))


def test_round_trips_through_the_topic_encoding():
    original = span(ended_at="2026-01-01T10:00:02Z", model_id="gpt-4o", input_tokens=12, input_args={"q": 1})
    assert decode_span(encode_span(original)) == original


def test_latency_is_computed_when_missing():
    assert span(ended_at="2026-01-01T10:00:01.250Z").latency_ms == 1250


def test_session_defaults_to_trace_then_span():
    assert span(trace_id="t1").session_id == "t1"
    assert span().session_id == "s1"


def test_unknown_fields_are_kept_as_attributes():
    assert span(langgraph_node="router", attributes={"k": "v"}).attributes == {"langgraph_node": "router", "k": "v"}


def test_payloads_given_as_json_are_stored_as_text():
    assert span(output_result={"hits": [1, 2]}).output_result == '{"hits":[1,2]}'


def test_naive_timestamps_are_utc():
    assert span(started_at="2026-01-01T10:00:00").started_at == datetime(2026, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"span_id": ""}, "span_id"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"ended_at": "2025-12-31T00:00:00Z"}, "ended_at is before started_at"),
        ({"input_tokens": -1}, "input_tokens"),
        ({"status": "exploded"}, "status"),
        ({"schema_version": 2}, "schema_version 2 is not supported"),
        # Bounds of what the views can store: such a span would be accepted, then never written.
        ({"started_at": "1969-12-31T23:59:59Z"}, "outside the storable range"),
        ({"ended_at": "2106-01-01T00:00:00Z"}, "outside the storable range"),
        ({"latency_ms": "Infinity"}, "latency_ms"),
        ({"input_tokens": 10**12 + 1}, "input_tokens"),
    ],
)
def test_invalid_spans_say_why(fields, reason):
    with pytest.raises(ValidationError, match=reason):
        span(**fields)


def test_missing_project_is_rejected():
    with pytest.raises(ValidationError, match="project_id"):
        decode_span('{"span_id": "s", "started_at": "2026-01-01T00:00:00Z"}')


def test_the_published_json_schema_is_current():
    from schemas.export import SCHEMA_FILE, render

    assert SCHEMA_FILE.read_text() == render(), "run `python -m schemas.export` and commit the result"
