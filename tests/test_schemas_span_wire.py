"""The fast decoding path gives the same span as pydantic's validation, or steps aside for it."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loadtests.generate import generate_session
from schemas.span import _SPAN_LIST, Span, decode_message, encode_spans
from schemas.span_wire import _TIME, NotFast, _canonical_utc, decode_many, decode_one

PROJECT = "6f1f0c9e-4a8e-4a53-9d7e-2b1f0e6c9a11"


def exact(span: Span) -> list:
    """A span's values with their types: 5 == 5.0 and two tzinfos of UTC compare equal, yet a
    row written from one would differ from a row written from the other."""
    out = []
    for name, value in span.__dict__.items():
        tz = value.tzinfo if isinstance(value, datetime) else None
        out.append((name, type(value).__name__, repr(value), tz is UTC))
    return out + [("extra", repr(span.__pydantic_extra__))]


def pydantic_span(data: bytes) -> Span | None:
    try:
        return Span.model_validate_json(data)
    except (ValidationError, ValueError):
        return None


def fast_span(data: bytes) -> Span | None:
    try:
        return decode_one(data)
    except NotFast:
        return None


def test_generated_sessions_take_the_fast_path_and_equal_pydantic():
    for index in range(20):
        message = encode_spans(generate_session(3, index, 50, PROJECT, datetime(2026, 11, 1, tzinfo=UTC)))
        fast = decode_many(message)  # raises NotFast if it stepped aside
        assert [exact(s) for s in fast] == [exact(s) for s in _SPAN_LIST.validate_json(message)]


def test_what_the_fast_path_leaves_to_pydantic_still_decodes():
    base = {"project_id": "p1", "span_id": "s1", "started_at": "2026-01-01T10:00:00Z"}
    for odd in ({"langgraph_node": "router"}, {"input_args": {"q": 1}}, {"input_tokens": "12"},
                {"started_at": 1767261600}, {"trace_id": None}):
        data = json.dumps({**base, **odd}).encode()
        with pytest.raises(NotFast):
            decode_one(data)
        spans, bad = decode_message(data)
        assert bad == [] and exact(spans[0]) == exact(Span.model_validate_json(data))


def test_times_are_read_as_pydantic_reads_them():
    # msgspec's own parser rounds a seventh digit; pydantic's truncates it.
    for started in ("2026-01-01T10:00:00.9999995Z", "2026-01-01T10:00:00.1234567+01:00", "2026-01-01 10:00:00"):
        data = json.dumps({"project_id": "p1", "span_id": "s1", "started_at": started}).encode()
        assert exact(decode_one(data)) == exact(Span.model_validate_json(data))


def test_a_bad_item_of_a_batch_still_gets_its_reason():
    good = {"project_id": "p1", "span_id": "s1", "started_at": "2026-01-01T10:00:00Z"}
    data = json.dumps([good, {**good, "span_id": "s2", "input_tokens": -1}]).encode()
    spans, bad = decode_message(data)
    assert [s.span_id for s in spans] == ["s1"]
    assert bad[0].index == 1 and "input_tokens" in bad[0].reason


digits = st.sampled_from("0123456789")


def numeric(n: int) -> st.SearchStrategy[str]:
    return st.text(digits, min_size=n, max_size=n)


times = st.one_of(
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1),
                 timezones=st.sampled_from([None, UTC])).map(lambda d: d.isoformat()),
    st.builds(lambda y, mo, d, sep, h, mi, s, frac, zone: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
              st.sampled_from(["1969", "1970", "2026", "2105", "2106", "0000"]), numeric(2), numeric(2),
              st.sampled_from(["T", "t", " ", "_"]), numeric(2), numeric(2), numeric(2),
              st.one_of(st.just(""), st.integers(1, 10).flatmap(numeric).map(lambda f: "." + f)),
              st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+14:00", "-23:59", "+24:00", "+0530", "+05", "Q"])),
    st.text(max_size=30),
    st.integers(-10**12, 10**12),
    st.none(),
)
strings = st.one_of(st.text(max_size=40), st.text(min_size=60, max_size=70), st.integers(), st.none(), st.floats())
numbers = st.one_of(st.integers(-5, 10**12 + 5), st.sampled_from([10**12, 10**12 + 1, 2**64, -0, 1.0, 2.5]),
                    st.floats(), st.text(digits, max_size=4), st.booleans(), st.none())
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=8)
valid_times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2105, 1, 1),
                           timezones=st.sampled_from([None, UTC])).map(lambda d: d.isoformat().replace("+00:00", "Z"))
ids = st.text(min_size=1, max_size=20)
# A span that is valid as far as each value's type goes, then some of its values replaced by
# anything at all: most examples reach the fast path, and many of the rest only just miss it.
valid = st.fixed_dictionaries(
    {"project_id": st.just(PROJECT), "span_id": ids, "started_at": valid_times},
    optional={
        "schema_version": st.just(1), "trace_id": ids, "session_id": ids, "parent_span_id": ids,
        "name": st.text(max_size=30), "span_type": st.sampled_from(["llm", "tool_call", "agent", "handoff"]),
        "status": st.sampled_from(["success", "error", "timeout", "prevented"]), "ended_at": valid_times,
        "latency_ms": st.floats(0, 1e9) | st.integers(0, 10**6), "error": st.text(max_size=20),
        "model_id": st.text(max_size=20), "input_tokens": st.integers(0, 10**12), "output_tokens": st.integers(0, 10**6),
        "cache_read_tokens": st.integers(0, 10**6), "thinking_tokens": st.integers(0, 10**6),
        "finish_reason": st.text(max_size=10), "input_args": st.text(max_size=30), "llm_output": st.text(max_size=30),
        "attributes": st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        "truncated_fields": st.lists(st.text(max_size=6), max_size=2),
    },
)
odd_values = {
    "project_id": strings, "span_id": strings, "schema_version": numbers, "trace_id": strings,
    "session_id": strings, "parent_span_id": strings, "name": strings, "agent_name": strings,
    "span_type": st.one_of(st.sampled_from(["LLM", "bogus", "user_message"]), strings),
    "status": st.one_of(st.sampled_from(["failed", "Success"]), strings), "started_at": times, "ended_at": times,
    "latency_ms": numbers, "error": st.one_of(strings, st.integers(8190, 8194).map(lambda n: "e" * n)),
    "model_id": strings, "input_tokens": numbers, "cache_creation_tokens": numbers, "finish_reason": strings,
    "input_args": st.one_of(strings, json_values, st.integers(128 * 1024 - 1, 128 * 1024 + 1).map(lambda n: "x" * n)),
    "output_result": st.one_of(strings, json_values), "attributes": json_values,
    "truncated_fields": st.one_of(st.lists(st.text(max_size=6), max_size=2), strings), "unknown_field": json_values,
}


@st.composite
def span_fields(draw):
    fields = draw(valid)
    for name in draw(st.lists(st.sampled_from(sorted(odd_values)), max_size=2, unique=True)):
        fields[name] = draw(odd_values[name])
    if draw(st.booleans()) and fields:
        del fields[draw(st.sampled_from(sorted(fields)))]
    return fields


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_fields(), st.booleans())
def test_the_fast_path_never_disagrees_with_pydantic(fields, ascii_only):
    data = json.dumps(fields, ensure_ascii=ascii_only).encode()
    fast, slow = fast_span(data), pydantic_span(data)
    event("fast path" if fast else "pydantic accepts" if slow else "rejected")
    if fast is not None:
        assert slow is not None, "the fast path accepted a span pydantic rejects"
        assert exact(fast) == exact(slow)
    # A whole batch: the same spans, whichever path took it.
    batch = b"[" + data + b"," + data + b"]"
    assert [exact(s) for s in decode_message(batch)[0]] == [exact(s) for s in ([slow, slow] if slow else [])]


def pydantic_time(text: str) -> datetime | None:
    """A time as Span's validation reads it: pydantic's parser, then Span._utc's normalising to
    UTC (its storable-range check comes after either reading, in both paths)."""
    try:
        value = _TIME(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


canonical_like = st.builds(
    lambda stem, fraction, zone: stem + fraction + zone,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda d: f"{d.year:04d}-{d:%m-%dT%H:%M:%S}"),
    st.one_of(st.just(""), st.integers(1, 6).flatmap(numeric).map(lambda f: "." + f),
              st.sampled_from([".", ".1234567", ".99999999"])),
    st.sampled_from(["Z", "Z", "Z", "z", "+00:00", ""]),
)


@st.composite
def mangled_times(draw):
    """Canonical times, some with a character replaced by any other (a digit, a separator,
    something from far outside ASCII), or cut short: the near misses the canonical check must
    leave to pydantic, or read exactly as it does."""
    text = draw(canonical_like)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        if text:
            at = draw(st.integers(0, len(text) - 1))
            text = text[:at] + draw(st.one_of(digits, st.sampled_from("-T:.Z +tz,/"), st.characters())) + text[at + 1:]
    if draw(st.integers(0, 3)) == 0 and text:
        text = text[:draw(st.integers(0, len(text)))]
    return text


def test_canonical_times_are_read_without_pydantic():
    for text in ("2026-12-01T14:11:09Z", "2026-12-01T14:11:09.1Z", "2026-12-01T14:11:09.123456Z"):
        value = _canonical_utc(text)
        assert value is not None and value.tzinfo is UTC and value == pydantic_time(text)
    for text in ("2026-12-01T14:11:09.1234567Z", "2026-12-01T14:11:09+00:00", "2026-12-01 14:11:09Z",
                 "2026-12-01T14:11:09.Z", "2026-12-01T24:00:00Z", "2026-02-30T10:00:00Z"):
        assert _canonical_utc(text) is None or _canonical_utc(text) == pydantic_time(text)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(canonical_like, mangled_times()))
def test_the_canonical_time_check_reads_what_pydantic_reads(text):
    fast = _canonical_utc(text)
    event("canonical" if fast is not None else "left to pydantic")
    if fast is not None:
        slow = pydantic_time(text)
        assert slow is not None, f"{text!r}: read by the canonical check, rejected by pydantic"
        assert (fast, fast.tzinfo is UTC) == (slow, slow.tzinfo is UTC)
