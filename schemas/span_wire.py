"""The fast path of span decoding: spans as producers usually send them, decoded and checked by
msgspec in C, giving the very `Span` that pydantic's validation gives.

Pydantic spent ~35 µs a span in the fold worker (half of its time; its per-field validators
alone are a third), msgspec ~5. The fast path accepts only what it is sure of: a span with no
field outside Span v1, every value of the type the field declares (no coercion such as "5" for
5), times read as pydantic reads them (its own parser, or datetime.fromisoformat for the one
canonical form both read alike). Anything else, valid or not, gets `NotFast`, and the caller
decodes the message with pydantic (schemas.span), which keeps unknown fields as attributes,
coerces what it coerces and words every rejection. So the result never depends on which path
decoded a message; tests/test_schemas_span_wire.py holds the two paths to that.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from pydantic_core import SchemaValidator, core_schema

from schemas.span import (
    ERROR_CAP, MAX_TOKENS, PAYLOAD_CAP, SCHEMA_VERSION, STORABLE_FROM, STORABLE_UNTIL, Span,
    SpanStatus, SpanType,
)


class NotFast(ValueError):
    """Not a span the fast path vouches for; decode it with pydantic, which says why if it is bad."""


def _text(limit: int) -> Any:
    return Annotated[str, Meta(max_length=limit)]


_Tokens = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]


class _WireSpan(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Span's fields in Span's order (its __dict__ is built from these), with its defaults and
    # bounds. Times are text here: msgspec rounds digits past the microsecond where pydantic
    # truncates them, so pydantic's own parser reads them (_TIME).
    schema_version: int = SCHEMA_VERSION
    project_id: _text(64) = ""
    span_id: Annotated[str, Meta(min_length=1, max_length=128)]
    trace_id: _text(128) = ""
    session_id: _text(256) = ""
    parent_span_id: _text(128) | None = None
    span_type: Literal[tuple(t.value for t in SpanType)] = SpanType.tool_call.value
    name: _text(1024) = ""
    server_name: _text(256) | None = None
    tool_name: _text(256) | None = None
    agent_name: _text(256) | None = None
    target_agent_name: _text(256) | None = None
    started_at: str
    ended_at: str | None = None
    latency_ms: Annotated[float, Meta(ge=0)] | None = None
    status: Literal[tuple(s.value for s in SpanStatus)] = SpanStatus.success.value
    # Longer than their caps: pydantic cuts them and names them in truncated_fields.
    error: _text(ERROR_CAP) | None = None
    model_id: _text(256) | None = None
    input_tokens: _Tokens = 0
    output_tokens: _Tokens = 0
    cache_read_tokens: _Tokens = 0
    cache_creation_tokens: _Tokens = 0
    thinking_tokens: _Tokens = 0
    finish_reason: _text(64) | None = None
    input_args: _text(PAYLOAD_CAP) | None = None
    output_result: _text(PAYLOAD_CAP) | None = None
    llm_input: _text(PAYLOAD_CAP) | None = None
    llm_output: _text(PAYLOAD_CAP) | None = None
    replay_of: str | None = None
    lineage_provenance: str | None = None
    lineage_status: str | None = None
    attributes: dict[str, Any] = {}
    truncated_fields: list[str] = []


assert _WireSpan.__struct_fields__ == tuple(Span.model_fields), "the fast path must list Span's fields in order"

_ONE = msgspec.json.Decoder(_WireSpan)
_MANY = msgspec.json.Decoder(list[_WireSpan])
# The datetime parser pydantic uses for Span's times (speedate), so both paths read a time alike.
_TIME = SchemaValidator(core_schema.datetime_schema()).validate_python
_ISO = datetime.fromisoformat
_as_dict = msgspec.structs.asdict
_new = object.__new__
_set = object.__setattr__


def _canonical_utc(text: str) -> datetime | None:
    """The time, if `text` has the form pydantic and orjson write (and so nearly every producer):
    `2026-12-01T14:11:09Z` or with 1-6 fraction digits, `.123456Z`. For that form alone
    datetime.fromisoformat reads what pydantic's parser reads, with UTC's own tzinfo already, so
    neither the parse nor the tzinfo swap that followed it (together ~3 µs, twice a span) is paid.
    None for anything else, which pydantic's parser then reads."""
    n = len(text)
    if 20 <= n <= 27 and text[-1] == "Z" and text[4:17:3] == "--T::" and (n == 20 or (n > 21 and text[19] == ".")):
        try:
            return _ISO(text)  # it rejects a non-digit where a digit belongs, as pydantic does
        except ValueError:
            return None
    return None


def _utc(text: str) -> datetime:
    value = _canonical_utc(text)
    if value is None:
        try:
            value = _TIME(text)
        except ValueError:  # pydantic_core.ValidationError is one
            raise NotFast from None
        # The same instant and tzinfo as Span._utc gives; astimezone() on pydantic's own tzinfo
        # costs more than the parse, and a time written with Z needs none.
        if text[-1] in "Zz" or value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        else:
            value = value.astimezone(UTC)
    if not STORABLE_FROM <= value < STORABLE_UNTIL:
        raise NotFast
    return value


def _span(wire: _WireSpan) -> Span:
    # What Span's validators do (schemas.span), for the inputs this path accepts: no value
    # past its cap (the decoder refuses those), so nothing to cut.
    if not wire.project_id or wire.schema_version != SCHEMA_VERSION:
        raise NotFast
    fields = _as_dict(wire)
    started = fields["started_at"] = _utc(wire.started_at)
    if wire.ended_at is not None:
        ended = fields["ended_at"] = _utc(wire.ended_at)
        if ended < started:
            raise NotFast
        if wire.latency_ms is None:
            fields["latency_ms"] = (ended - started).total_seconds() * 1000
    if not wire.session_id:
        fields["session_id"] = wire.trace_id or wire.span_id
    # A model as pydantic's validation leaves it (BaseModel.model_construct does the same,
    # field by field in Python). Which fields the producer set is not kept: nothing reads it.
    span = _new(Span)
    _set(span, "__dict__", fields)
    _set(span, "__pydantic_fields_set__", set())
    _set(span, "__pydantic_extra__", {})
    _set(span, "__pydantic_private__", None)
    return span


def decode_one(data: bytes | str) -> Span:
    """One span (a JSON object); NotFast if the fast path does not vouch for it."""
    try:
        wire = _ONE.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise NotFast from None
    return _span(wire)


def decode_many(data: bytes) -> list[Span]:
    """A batch message (a JSON array of spans); NotFast if the fast path does not vouch for all of it."""
    try:
        wires = _MANY.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise NotFast from None
    return [_span(wire) for wire in wires]
