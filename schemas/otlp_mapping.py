"""The rules that turn one OTLP span, decoded from either encoding, into a Span v1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.span import Span, SpanStatus, SpanType

STATUS_CODE_UNSET = 0
STATUS_CODE_ERROR = 2
SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# GenAI semconv operation names first: they say what the call was, OpenInference only how it
# was instrumented. `retrieval` is newer than the rest but as unambiguous.
_OPERATION_TYPES = {
    "chat": SpanType.llm,
    "text_completion": SpanType.llm,
    "generate_content": SpanType.llm,
    "execute_tool": SpanType.tool_call,
    "invoke_agent": SpanType.agent,
    "create_agent": SpanType.agent,
    "embeddings": SpanType.embedding,
    "retrieval": SpanType.retriever,
}
_OPENINFERENCE_TYPES = {
    "LLM": SpanType.llm,
    "TOOL": SpanType.tool_call,
    "AGENT": SpanType.agent,
    "CHAIN": SpanType.node,
    "RETRIEVER": SpanType.retriever,
    "EMBEDDING": SpanType.embedding,
    "RERANKER": SpanType.reranker,
    "GUARDRAIL": SpanType.guardrail,
    "EVALUATOR": SpanType.evaluator,
}

# Each count's spellings, preferred first: GenAI semconv (whose input count includes cached
# tokens), its older or vendor spellings, then OpenInference.
_TOKEN_KEYS = {
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    "cache_read_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
    ),
    "cache_creation_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
    ),
    "thinking_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "llm.token_count.completion_details.reasoning",
    ),
}

_FLATTENED_MESSAGE_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.", "llm.output_messages.")


@dataclass(slots=True)
class OtlpSpan:
    """One OTLP span as either front-end decodes it: ids as lowercase hex, attribute values
    as JSON-compatible Python values. `attributes` is the mapper's to consume."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    exceptions: list[dict[str, Any]]  # attributes of the span's `exception` events, in order


def span_from_otlp(otlp: OtlpSpan, project_id: str, inherited: dict[str, Any]) -> Span:
    """The Span v1 of one OTLP span. `inherited` holds the attributes every span of its scope
    carries (`resource.*`, `otel.scope.*`). An attribute whose value moves into a Span field
    leaves `attributes`; every other one stays. Raises ValueError (pydantic's ValidationError
    included) when the span cannot become a Span v1."""
    if not otlp.start_ns:
        raise ValueError("started_at: the span has no start_time_unix_nano")
    attributes = otlp.attributes
    span_type = _lookup(_OPERATION_TYPES, attributes.get("gen_ai.operation.name")) or _lookup(
        _OPENINFERENCE_TYPES, attributes.get("openinference.span.kind")
    )
    tool_name = _take_text(attributes, "gen_ai.tool.name", "tool.name")
    if span_type is None:
        span_type = SpanType.tool_call if tool_name else SpanType.other
    status, error = _outcome(otlp, attributes)
    server_name = _take_text(attributes, "mcp.server.name")
    if server_name is None and span_type is SpanType.tool_call:
        server_name = _take_text(attributes, "server.address")

    fields: dict[str, Any] = {
        name: count for name, keys in _TOKEN_KEYS.items() if (count := _take_count(attributes, keys)) is not None
    }
    if span_type is SpanType.tool_call:
        fields["input_args"] = _take_payload(attributes, "gen_ai.tool.call.arguments", "input.value", "tool.parameters")
        fields["output_result"] = _take_payload(attributes, "gen_ai.tool.call.result", "output.value")
    else:
        fields["input_args"] = _take_payload(attributes, "gen_ai.tool.call.arguments")
        fields["output_result"] = _take_payload(attributes, "gen_ai.tool.call.result")
    fields["llm_input"] = _take_payload(attributes, "gen_ai.input.messages", "gen_ai.prompt")
    fields["llm_output"] = _take_payload(attributes, "gen_ai.output.messages", "gen_ai.completion")
    if span_type is SpanType.llm and (fields["llm_input"] is None or fields["llm_output"] is None):
        # Flattened message lists (OpenLLMetry's gen_ai.prompt.0.role, OpenInference's
        # llm.input_messages.0.message.role) only when nothing gave the messages whole.
        flattened = [key for key in attributes if key.startswith(_FLATTENED_MESSAGE_PREFIXES)]
        if fields["llm_input"] is None:
            fields["llm_input"] = _take_messages(attributes, flattened, "gen_ai.prompt.")
        if fields["llm_input"] is None:
            fields["llm_input"] = _take_payload(attributes, "input.value")
        if fields["llm_input"] is None:
            fields["llm_input"] = _take_messages(attributes, flattened, "llm.input_messages.")
        if fields["llm_output"] is None:
            fields["llm_output"] = _take_messages(attributes, flattened, "gen_ai.completion.")
        if fields["llm_output"] is None:
            fields["llm_output"] = _take_payload(attributes, "output.value")
        if fields["llm_output"] is None:
            fields["llm_output"] = _take_messages(attributes, flattened, "llm.output_messages.")

    # Taken before `attributes` is copied below, so that what they consume is not kept twice.
    fields["session_id"] = _take_text(attributes, "session.id", "gen_ai.conversation.id", "langsight.session_id")
    fields["agent_name"] = _take_text(attributes, "gen_ai.agent.name", "agent.name")
    fields["model_id"] = _take_text(attributes, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
    fields["finish_reason"] = _take_finish_reason(attributes)
    return Span(
        project_id=project_id,
        span_id=otlp.span_id,
        trace_id=otlp.trace_id,
        parent_span_id=otlp.parent_span_id or None,
        span_type=span_type,
        name=otlp.name,
        server_name=server_name,
        tool_name=tool_name,
        started_at=_EPOCH + timedelta(microseconds=otlp.start_ns // 1000),
        ended_at=_EPOCH + timedelta(microseconds=otlp.end_ns // 1000) if otlp.end_ns else None,
        status=status,
        error=error,
        **fields,
        attributes={
            **inherited,
            **attributes,
            "otel.span_kind": SPAN_KINDS.get(otlp.kind, str(otlp.kind)),
        },
    )


def _outcome(otlp: OtlpSpan, attributes: dict[str, Any]) -> tuple[SpanStatus, str | None]:
    # error.type is set by semconv instrumentations only when the operation failed, so it
    # marks a failure when the status was left unset (an explicit OK wins). It stays in attributes.
    error_type = attributes.get("error.type")
    failed = otlp.status_code == STATUS_CODE_ERROR or (otlp.status_code == STATUS_CODE_UNSET and bool(error_type))
    if not failed:
        return SpanStatus.success, None
    # The last exception event is the one that ended the span.
    exception = otlp.exceptions[-1] if otlp.exceptions else {}
    exception_type = exception.get("exception.type")
    exception_message = exception.get("exception.message")
    if otlp.status_message:
        error = otlp.status_message
    elif exception_type and exception_message:
        error = f"{exception_type}: {exception_message}"
    else:
        error = exception_message or exception_type or (error_type if isinstance(error_type, str) else None)
    timed_out = "timeout" in str(error_type or "").lower() or "timeout" in str(exception_type or "").lower()
    return (SpanStatus.timeout if timed_out else SpanStatus.error), (str(error) if error else None)


def _lookup(types: dict[str, SpanType], value: Any) -> SpanType | None:
    return types.get(value) if isinstance(value, str) else None


def _take_text(attributes: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str):
            if value:
                del attributes[key]
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            del attributes[key]
            return str(value)
    return None


def _take_count(attributes: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    # A negative count is kept as given so that validation rejects the span with the reason.
    for key in keys:
        value = attributes.get(key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            count = value
        elif isinstance(value, float) and value.is_integer():
            count = int(value)
        elif isinstance(value, str):
            try:
                count = int(value)
            except ValueError:
                continue
        else:
            continue
        del attributes[key]
        return count
    return None


def _take_payload(attributes: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            del attributes[key]
            return value
    return None


def _take_messages(attributes: dict[str, Any], flattened: list[str], prefix: str) -> list[dict[str, Any]] | None:
    """`prefix.<index>.<field>` attributes as a list of messages, one dict of fields each."""
    messages: dict[int, dict[str, Any]] = {}
    for key in flattened:
        if not key.startswith(prefix) or key not in attributes:
            continue
        index, _, field = key[len(prefix) :].partition(".")
        if index.isdecimal() and field:
            messages.setdefault(int(index), {})[field.removeprefix("message.")] = attributes.pop(key)
    return [messages[index] for index in sorted(messages)] or None


def _take_finish_reason(attributes: dict[str, Any]) -> str | None:
    reasons = attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str) and reasons:
        del attributes["gen_ai.response.finish_reasons"]
        return reasons
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        # Several choices' reasons stay whole in attributes; the field holds the first.
        if len(reasons) == 1:
            del attributes["gen_ai.response.finish_reasons"]
        return reasons[0]
    return None
