"""Span v1: one call an agent made (an LLM, a tool, a handoff), as it travels on the `spans` topic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator

SCHEMA_VERSION = 1
ERROR_CAP = 8 * 1024
PAYLOAD_CAP = 128 * 1024
PAYLOAD_FIELDS = ("input_args", "output_result", "llm_input", "llm_output")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "thinking_tokens")
# What the views can hold: a span's hour of cost is a ClickHouse DateTime (1970 to 2106), and
# token sums are UInt64. A span outside these bounds would be accepted and then never written,
# so it is refused at the door with the reason.
STORABLE_FROM = datetime(1970, 1, 1, tzinfo=UTC)
STORABLE_UNTIL = datetime(2106, 1, 1, tzinfo=UTC)
MAX_TOKENS = 10**12


class SpanType(StrEnum):
    tool_call = "tool_call"
    llm = "llm"
    agent = "agent"
    node = "node"
    handoff = "handoff"
    llm_intent = "llm_intent"
    user_message = "user_message"
    topology = "topology"
    retriever = "retriever"
    embedding = "embedding"
    reranker = "reranker"
    guardrail = "guardrail"
    evaluator = "evaluator"
    other = "other"


class SpanStatus(StrEnum):
    success = "success"
    error = "error"
    timeout = "timeout"
    prevented = "prevented"


def _as_text(value: Any) -> str | None:
    """Payloads arrive as strings or as JSON values; they are stored as text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


class Span(BaseModel):
    """The canonical span. Fields a producer sends that are not listed here are kept in
    `attributes`, never dropped."""

    model_config = ConfigDict(extra="allow", use_enum_values=True, validate_default=True)

    schema_version: int = SCHEMA_VERSION
    # Required on the topic. Over HTTP the API key decides it: ingestion passes the key's project
    # as validation context, which overrides whatever the producer wrote.
    project_id: str = Field(default="", max_length=64)
    span_id: str = Field(min_length=1, max_length=128)
    trace_id: str = Field(default="", max_length=128)
    # Per-session state is keyed by it; a span without one is its trace's session.
    session_id: str = Field(default="", max_length=256)
    parent_span_id: str | None = Field(default=None, max_length=128)
    span_type: SpanType = SpanType.tool_call
    name: str = Field(default="", max_length=1024)

    server_name: str | None = Field(default=None, max_length=256)
    tool_name: str | None = Field(default=None, max_length=256)
    agent_name: str | None = Field(default=None, max_length=256)
    target_agent_name: str | None = Field(default=None, max_length=256)

    started_at: datetime
    ended_at: datetime | None = None
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    status: SpanStatus = SpanStatus.success
    error: str | None = None

    model_id: str | None = Field(default=None, max_length=256)
    input_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    output_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    cache_read_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    cache_creation_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    thinking_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    finish_reason: str | None = Field(default=None, max_length=64)

    input_args: str | None = None
    output_result: str | None = None
    llm_input: str | None = None
    llm_output: str | None = None

    replay_of: str | None = None
    lineage_provenance: str | None = None
    lineage_status: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    # Names of the fields cut to their cap (payloads 128 KiB, error 8 KiB); set by validation.
    truncated_fields: list[str] = Field(default_factory=list)

    @field_validator("started_at", "ended_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if not STORABLE_FROM <= value < STORABLE_UNTIL:
            raise ValueError(f"{value.isoformat()} is outside the storable range, 1970-01-01 to 2105-12-31 (UTC)")
        return value

    @field_validator("input_args", "output_result", "llm_input", "llm_output", mode="before")
    @classmethod
    def _payload_text(cls, value: Any) -> str | None:
        return _as_text(value)

    @field_validator("project_id")
    @classmethod
    def _owner(cls, value: str, info: ValidationInfo) -> str:
        owner = (info.context or {}).get("project_id")
        if owner:
            return owner
        if not value:
            raise ValueError("Field required: every span names the project it belongs to")
        return value

    @field_validator("project_id", "trace_id", "session_id", mode="before")
    @classmethod
    def _absent_id(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator(*TOKEN_FIELDS, mode="before")
    @classmethod
    def _absent_count(cls, value: Any) -> Any:
        return 0 if value is None else value

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"schema_version {value} is not supported (this build reads {SCHEMA_VERSION})")
        return value

    @model_validator(mode="after")
    def _derive(self) -> Span:
        # Writes go straight to __dict__: this runs for every span on the ingestion and replay
        # hot paths, and pydantic's __setattr__ costs more than the rest of this method.
        fields = self.__dict__
        if self.model_extra:
            fields["attributes"] = {**self.model_extra, **self.attributes}
            self.model_extra.clear()
        if not self.session_id:
            fields["session_id"] = self.trace_id or self.span_id
        ended = self.ended_at
        if ended is not None:
            if ended < self.started_at:
                raise ValueError("ended_at is before started_at")
            if self.latency_ms is None:
                fields["latency_ms"] = (ended - self.started_at).total_seconds() * 1000
        truncated = None
        if self.error is not None and len(self.error) > ERROR_CAP:
            fields["error"] = self.error[:ERROR_CAP]
            truncated = {"error"}
        for name in PAYLOAD_FIELDS:
            value = fields[name]
            if value is not None and len(value) > PAYLOAD_CAP:
                fields[name] = value[:PAYLOAD_CAP]
                truncated = (truncated or set()) | {name}
        if truncated:
            fields["truncated_fields"] = sorted(truncated.union(self.truncated_fields))
        return self


def encode_span(span: Span) -> bytes:
    """The bytes of a one-span message on the `spans` topic."""
    return span.model_dump_json(exclude_none=True).encode()


_SPAN_LIST = TypeAdapter(list[Span])
# Batch messages stay well under the topic's message size limit; one big span may go alone.
BATCH_MESSAGE_BYTES = 512 * 1024


def session_messages(spans: list[Span], max_bytes: int = BATCH_MESSAGE_BYTES) -> list[tuple[bytes, bytes]]:
    """(key, value) messages for the `spans` topic: spans grouped by session, keyed by
    session_id, one JSON array per message. Fewer, larger messages are what make Python
    stream processing fast; one partition per session is what makes per-session state right."""
    by_session: dict[str, list[Span]] = {}
    for span in spans:
        by_session.setdefault(span.session_id, []).append(span)
    messages: list[tuple[bytes, bytes]] = []
    for session, group in by_session.items():
        _append_batches(messages, session.encode(), group, max_bytes)
    return messages


def _append_batches(messages: list[tuple[bytes, bytes]], key: bytes, group: list[Span], max_bytes: int) -> None:
    # Encode the whole group in one call (the common case fits); halve it while it does not.
    value = encode_spans(group)
    if len(value) <= max_bytes or len(group) == 1:
        messages.append((key, value))
        return
    middle = len(group) // 2
    _append_batches(messages, key, group[:middle], max_bytes)
    _append_batches(messages, key, group[middle:], max_bytes)


def encode_spans(spans: list[Span]) -> bytes:
    """The bytes of a batch message: a JSON array of spans, all of one session."""
    return _SPAN_LIST.dump_json(spans, exclude_none=True)


def decode_span(data: bytes | str) -> Span:
    """Parses and validates one span; raises pydantic.ValidationError with the reason."""
    try:
        return _fast.decode_one(data)
    except _fast.NotFast:
        return Span.model_validate_json(data)


@dataclass(frozen=True)
class Unreadable:
    """A message, or one item of a batch message, that is not a valid span."""

    index: int | None  # position in a batch message; None when the whole message is unreadable
    raw: bytes
    reason: str


def validation_reason(error: Exception) -> str:
    """One line a producer can act on: which field, and what is wrong with it."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'span'}: {e['msg']}" for e in error.errors(include_url=False)
        )
    return f"{type(error).__name__}: {error}"


def decode_message(data: bytes) -> tuple[list[Span], list[Unreadable]]:
    """Decodes a `spans` message, one span (a JSON object) or a batch (a JSON array). A bad
    item of a batch does not take the good ones down with it."""
    stripped = data.lstrip()
    if not stripped.startswith(b"["):
        try:
            return [decode_span(data)], []
        except (ValidationError, ValueError) as error:
            return [], [Unreadable(None, data, validation_reason(error))]
    try:
        return _fast.decode_many(data), []
    except _fast.NotFast:
        pass  # pydantic decides, and words what is wrong
    try:
        return _SPAN_LIST.validate_json(data), []
    except ValidationError:
        pass  # find out which items are bad
    try:
        items = json.loads(data)
    except ValueError as error:
        return [], [Unreadable(None, data, validation_reason(error))]
    spans: list[Span] = []
    bad: list[Unreadable] = []
    for index, item in enumerate(items):
        try:
            spans.append(Span.model_validate(item))
        except (ValidationError, ValueError) as error:
            bad.append(Unreadable(index, json.dumps(item, default=str).encode(), validation_reason(error)))
    return spans, bad


# At the end: the fast path reads this module's names (schemas/span_wire.py).
import schemas.span_wire as _fast  # noqa: E402
