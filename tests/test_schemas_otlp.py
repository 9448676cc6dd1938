"""OTLP trace export requests, protobuf and JSON, become the same Span v1 records."""

import base64
import json
from datetime import UTC, datetime

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from schemas.otlp import OtlpDecodeError, spans_from_otlp_json, spans_from_otlp_protobuf

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
T0 = 1_767_261_600_000_000_000  # 2026-01-01T10:00:00Z
SECOND = 1_000_000_000


def any_value(value):
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        array = AnyValue()
        array.array_value.values.extend(any_value(item) for item in value)
        return array
    kvlist = AnyValue()
    kvlist.kvlist_value.values.extend(key_values(value))
    return kvlist


def key_values(attributes):
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def span(span_id="00f067aa0ba902b7", parent="", start=T0, end=T0 + 2 * SECOND, attributes=None, trace_id=TRACE, **fields):
    return OtlpSpan(
        trace_id=trace_id,
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent),
        name=fields.pop("name", "step"),
        kind=fields.pop("kind", OtlpSpan.SPAN_KIND_INTERNAL),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=key_values(attributes or {}),
        **fields,
    )


def export(*spans, resource=None, scope=("agent-instrumentation", "1.2.0")):
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values(resource or {"service.name": "travel-agent"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = scope
    scope_spans.spans.extend(spans)
    return request


def otlp_json(request):
    """The OTLP JSON encoding of a request: proto3 JSON with enums as ints and ids as hex."""
    as_dict = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in as_dict.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for item in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(as_dict).encode()


def mapped(request, project_id="p1"):
    """The batch of a request, checked to be the same whichever encoding carried it."""
    from_protobuf = spans_from_otlp_protobuf(request.SerializeToString(), project_id)
    from_json = spans_from_otlp_json(otlp_json(request), project_id)
    assert from_json == from_protobuf
    return from_protobuf


def only(request):
    batch = mapped(request)
    assert batch.rejected == []
    [one] = batch.spans
    return one


def test_both_encodings_map_to_the_same_spans():
    request = export(
        span("00f067aa0ba902b7", attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}),
        span("1111111111111111", parent="00f067aa0ba902b7", attributes={"gen_ai.tool.name": "search", "n": 3}),
    )
    batch = mapped(request)
    assert [(s.span_id, s.parent_span_id, s.span_type, s.agent_name, s.tool_name) for s in batch.spans] == [
        ("00f067aa0ba902b7", None, "agent", "planner", None),
        ("1111111111111111", "00f067aa0ba902b7", "tool_call", None, "search"),
    ]
    first = batch.spans[0]
    assert (first.project_id, first.trace_id, first.session_id) == ("p1", TRACE.hex(), TRACE.hex())
    assert first.started_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert first.latency_ms == 2000


def test_hand_written_otlp_json():
    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{
                "scope": {"name": "manual"},
                "spans": [{
                    "traceId": TRACE.hex().upper(),
                    "spanId": "00F067AA0BA902B7",
                    "name": "chat",
                    "kind": 3,
                    "startTimeUnixNano": str(T0 + 1500),
                    "endTimeUnixNano": T0 + SECOND,
                    "attributes": [
                        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 7}},
                        {"key": "temperature", "value": {"doubleValue": 1}},
                        {"key": "stream", "value": {"boolValue": True}},
                    ],
                    "status": {"code": 2, "message": "rate limited"},
                }],
            }],
        }]
    }  # fmt: skip
    [one] = spans_from_otlp_json(json.dumps(body).encode(), "p1").spans
    assert (one.trace_id, one.span_id, one.span_type) == (TRACE.hex(), "00f067aa0ba902b7", "llm")
    assert one.started_at == datetime(2026, 1, 1, 10, 0, 0, 1, tzinfo=UTC)
    assert (one.input_tokens, one.output_tokens, one.status, one.error) == (12, 7, "error", "rate limited")
    assert one.attributes == {
        "resource.service.name": "svc",
        "otel.scope.name": "manual",
        "otel.span_kind": "client",
        "gen_ai.operation.name": "chat",
        "temperature": 1.0,
        "stream": True,
    }


def test_genai_llm_span_with_cache_and_reasoning_tokens():
    one = only(
        export(
            span(
                name="chat claude-sonnet-4",
                kind=OtlpSpan.SPAN_KIND_CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4",
                    "gen_ai.response.model": "claude-sonnet-4-20250514",
                    "gen_ai.usage.input_tokens": 1500,
                    "gen_ai.usage.output_tokens": 420,
                    "gen_ai.usage.cache_read.input_tokens": 1200,
                    "gen_ai.usage.cache_creation.input_tokens": 200,
                    "gen_ai.usage.reasoning.output_tokens": 180,
                    "gen_ai.response.finish_reasons": ["end_turn"],
                    "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
                    "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "end_turn"}],
                    "gen_ai.conversation.id": "conv-7",
                },
            )
        )
    )
    assert (one.span_type, one.name, one.model_id, one.finish_reason) == (
        "llm", "chat claude-sonnet-4", "claude-sonnet-4-20250514", "end_turn"
    )  # fmt: skip
    assert (one.input_tokens, one.output_tokens, one.cache_read_tokens) == (1500, 420, 1200)
    assert (one.cache_creation_tokens, one.thinking_tokens) == (200, 180)
    assert one.llm_input == '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert json.loads(one.llm_output) == [{"role": "assistant", "finish_reason": "end_turn"}]
    assert one.session_id == "conv-7"
    # The provider and the requested model are not Span fields, and are worth keeping.
    assert one.attributes["gen_ai.provider.name"] == "anthropic"
    assert one.attributes["gen_ai.request.model"] == "claude-sonnet-4"
    assert one.attributes["otel.span_kind"] == "client"
    assert not {"gen_ai.usage.input_tokens", "gen_ai.response.model", "gen_ai.input.messages"} & one.attributes.keys()


def test_legacy_and_openinference_token_spellings():
    legacy = only(export(span(attributes={
        "gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 5,
        "gen_ai.usage.cache_read_input_tokens": 4, "gen_ai.usage.cache_creation_input_tokens": 3,
        "gen_ai.usage.reasoning_tokens": 2,
    })))  # fmt: skip
    openinference = only(export(span(attributes={
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai",
        "llm.token_count.prompt": 10, "llm.token_count.completion": 5,
        "llm.token_count.prompt_details.cache_read": 4, "llm.token_count.prompt_details.cache_write": 3,
        "llm.token_count.completion_details.reasoning": 2,
    })))  # fmt: skip
    for one in (legacy, openinference):
        counts = (one.input_tokens, one.output_tokens, one.cache_read_tokens, one.cache_creation_tokens)
        assert counts + (one.thinking_tokens,) == (10, 5, 4, 3, 2)
    assert legacy.attributes["gen_ai.system"] == "openai"
    assert (openinference.span_type, openinference.model_id) == ("llm", "gpt-4o")
    assert openinference.attributes["llm.provider"] == "openai"


def test_openinference_llm_messages_become_the_llm_input():
    one = only(export(span(attributes={
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "be brief",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "weather?",
        "llm.output_messages.0.message.content": "sunny",
    })))  # fmt: skip
    assert json.loads(one.llm_input) == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather?"}]
    assert json.loads(one.llm_output) == [{"content": "sunny"}]
    assert not any(key.startswith("llm.") for key in one.attributes)


def test_openinference_tool_span():
    one = only(export(span(attributes={
        "openinference.span.kind": "TOOL",
        "tool.name": "get_weather",
        "tool.description": "Weather by city",
        "input.value": '{"city": "Paris"}',
        "output.value": {"temp_c": 21},
        "session.id": "sess-1",
        "agent.name": "forecaster",
    })))  # fmt: skip
    assert (one.span_type, one.tool_name, one.agent_name, one.session_id) == (
        "tool_call", "get_weather", "forecaster", "sess-1"
    )  # fmt: skip
    assert (one.input_args, one.output_result, one.status) == ('{"city": "Paris"}', '{"temp_c":21}', "success")
    assert one.attributes["tool.description"] == "Weather by city"


def test_execute_tool_span_with_error_status_and_exception_event():
    failed = span(
        status=Status(code=Status.STATUS_CODE_ERROR),
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "book_flight",
            "gen_ai.tool.call.arguments": {"from": "CDG", "to": "JFK"},
            "mcp.server.name": "travel-mcp",
            "error.type": "ValueError",
        },
    )
    failed.events.add(name="exception", time_unix_nano=T0 + SECOND).attributes.extend(
        key_values({"exception.type": "ValueError", "exception.message": "no seats", "exception.stacktrace": "..."})
    )
    failed.events.add(name="retrying")
    one = only(export(failed))
    assert (one.span_type, one.tool_name, one.server_name) == ("tool_call", "book_flight", "travel-mcp")
    assert (one.status, one.error) == ("error", "ValueError: no seats")
    assert json.loads(one.input_args) == {"from": "CDG", "to": "JFK"}
    assert one.attributes["error.type"] == "ValueError"


@pytest.mark.parametrize(
    "status, attributes, exception_type, expected",
    [
        (Status(code=Status.STATUS_CODE_ERROR, message="upstream said 502"), {}, "IOError", ("error", "upstream said 502")),
        (Status(code=Status.STATUS_CODE_ERROR), {}, "TimeoutError", ("timeout", "TimeoutError: gave up")),
        (Status(code=Status.STATUS_CODE_ERROR), {"error.type": "httpx.ReadTimeout"}, None, ("timeout", "httpx.ReadTimeout")),
        (Status(), {"error.type": "tool_error"}, None, ("error", "tool_error")),
        (Status(code=Status.STATUS_CODE_OK), {"error.type": "tool_error"}, None, ("success", None)),
        # A handled exception recorded on a span that did not fail.
        (Status(), {}, "KeyError", ("success", None)),
    ],
)
def test_status(status, attributes, exception_type, expected):
    item = span(status=status, attributes={"gen_ai.operation.name": "execute_tool", **attributes})
    if exception_type:
        item.events.add(name="exception").attributes.extend(
            key_values({"exception.type": exception_type, "exception.message": "gave up"})
        )
    one = only(export(item))
    assert (one.status, one.error) == expected


def test_server_address_names_the_server_of_tool_spans_only():
    tool = only(export(span(attributes={"gen_ai.tool.name": "search", "server.address": "mcp.internal"})))
    llm = only(export(span(attributes={"gen_ai.operation.name": "chat", "server.address": "api.openai.com"})))
    assert (tool.server_name, llm.server_name) == ("mcp.internal", None)
    assert llm.attributes["server.address"] == "api.openai.com"


@pytest.mark.parametrize(
    "attributes, expected",
    [
        ({"session.id": "s", "gen_ai.conversation.id": "c", "langsight.session_id": "l"}, "s"),
        ({"gen_ai.conversation.id": "c", "langsight.session_id": "l"}, "c"),
        ({"langsight.session_id": "l"}, "l"),
        ({}, TRACE.hex()),
    ],
)
def test_session_id(attributes, expected):
    assert only(export(span(attributes=attributes))).session_id == expected


def test_spans_of_a_trace_join_the_session_its_root_names():
    other_trace = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    batch = mapped(export(
        span("00000000000000a1", attributes={"session.id": "chat-42", "gen_ai.operation.name": "invoke_agent"}),
        span("00000000000000a2", parent="00000000000000a1", attributes={"gen_ai.operation.name": "chat"}),
        span("00000000000000a3", parent="00000000000000a2", attributes={"gen_ai.tool.name": "search"}),
        span("00000000000000b1", trace_id=other_trace),
    ))
    sessions = {one.span_id: one.session_id for one in batch.spans}
    assert sessions == {"00000000000000a1": "chat-42", "00000000000000a2": "chat-42",
                        "00000000000000a3": "chat-42", "00000000000000b1": other_trace.hex()}


def test_the_session_given_first_wins_and_the_other_is_kept():
    one = only(export(span(attributes={"session.id": "s", "gen_ai.conversation.id": "c"})))
    assert one.session_id == "s"
    assert one.attributes["gen_ai.conversation.id"] == "c"
    assert "session.id" not in one.attributes


@pytest.mark.parametrize(
    "attributes, expected",
    [
        ({"gen_ai.operation.name": "text_completion"}, "llm"),
        ({"gen_ai.operation.name": "generate_content"}, "llm"),
        ({"gen_ai.operation.name": "create_agent"}, "agent"),
        ({"gen_ai.operation.name": "embeddings"}, "embedding"),
        ({"gen_ai.operation.name": "chat", "openinference.span.kind": "TOOL"}, "llm"),
        ({"openinference.span.kind": "CHAIN"}, "node"),
        ({"openinference.span.kind": "RETRIEVER"}, "retriever"),
        ({"openinference.span.kind": "EMBEDDING"}, "embedding"),
        ({"openinference.span.kind": "RERANKER"}, "reranker"),
        ({"openinference.span.kind": "GUARDRAIL"}, "guardrail"),
        ({"openinference.span.kind": "EVALUATOR"}, "evaluator"),
        ({"openinference.span.kind": "AGENT"}, "agent"),
        ({"gen_ai.operation.name": "something_new", "tool.name": "grep"}, "tool_call"),
        ({"http.method": "GET"}, "other"),
    ],
)
def test_span_type(attributes, expected):
    assert only(export(span(attributes=attributes))).span_type == expected


def test_unknown_span_and_resource_attributes_are_kept():
    one = only(
        export(
            span(attributes={"app.step": "plan", "app.tags": ["a", 1, True], "app.config": {"depth": 2}, "blob": b"\x00\xff"}),
            resource={"service.name": "travel-agent", "deployment.environment": "prod"},
        )
    )
    assert one.attributes == {
        "app.step": "plan",
        "app.tags": ["a", 1, True],
        "app.config": {"depth": 2},
        "blob": base64.b64encode(b"\x00\xff").decode(),
        "resource.service.name": "travel-agent",
        "resource.deployment.environment": "prod",
        "otel.scope.name": "agent-instrumentation",
        "otel.scope.version": "1.2.0",
        "otel.span_kind": "internal",
    }
    # service.name names the process, not an agent.
    assert one.agent_name is None


def test_the_project_is_the_callers_not_the_producers():
    one = only(export(span(attributes={"project_id": "someone-else"})))
    assert one.project_id == "p1"
    assert one.attributes["project_id"] == "someone-else"


def test_a_span_that_cannot_be_a_span_is_rejected_and_its_sibling_accepted():
    batch = mapped(
        export(
            span("00f067aa0ba902b7", start=0),
            span("2222222222222222"),
            span("3333333333333333", end=T0 - SECOND),
            span("", name="no id"),
            span("4444444444444444", attributes={"gen_ai.usage.input_tokens": -5}),
        )
    )
    assert [s.span_id for s in batch.spans] == ["2222222222222222"]
    assert [span_id for span_id, _ in batch.rejected] == ["00f067aa0ba902b7", "3333333333333333", "", "4444444444444444"]
    reasons = [reason for _, reason in batch.rejected]
    assert "started_at" in reasons[0]
    assert "ended_at is before started_at" in reasons[1]
    assert "span_id" in reasons[2]
    assert "input_tokens" in reasons[3]


def test_payloads_past_the_cap_are_truncated_and_flagged():
    one = only(export(span(attributes={"gen_ai.tool.name": "read", "gen_ai.tool.call.result": "x" * 200_000})))
    assert len(one.output_result) == 128 * 1024
    assert one.truncated_fields == ["output_result"]


def test_an_empty_request_has_no_spans():
    assert mapped(ExportTraceServiceRequest()).spans == []
    assert spans_from_otlp_json(b"{}", "p1").spans == []


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"not a protobuf", b"\x0a\x05\x0a\x03"])
def test_garbage_protobuf_is_refused(body):
    with pytest.raises(OtlpDecodeError):
        spans_from_otlp_protobuf(body, "p1")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"resourceSpans": {}}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": ["a span"]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": 5}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "not-hex"}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {"intValue": 1.5}}]}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {"bytesValue": "%%"}}]}]}]}]}',
    ],
)
def test_wrong_json_is_refused(body):
    with pytest.raises(OtlpDecodeError):
        spans_from_otlp_json(body, "p1")


# --- properties -------------------------------------------------------------------------

TOKEN_SPELLINGS = {
    "input_tokens": ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"],
    "output_tokens": ["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"],
    "cache_read_tokens": ["gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt_details.cache_read"],
    "cache_creation_tokens": ["gen_ai.usage.cache_creation_input_tokens", "llm.token_count.prompt_details.cache_write"],
    "thinking_tokens": ["gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"],
}
KNOWN = [
    "gen_ai.operation.name", "openinference.span.kind", "gen_ai.tool.name", "tool.name", "session.id",
    "gen_ai.conversation.id", "gen_ai.request.model", "gen_ai.response.model", "input.value", "output.value",
    "gen_ai.input.messages", "gen_ai.output.messages", "error.type", "server.address", "mcp.server.name",
]  # fmt: skip

scalars = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=8),
)
any_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
unknown_keys = st.text("abcxyz._-", min_size=1, max_size=12).map(lambda key: f"x.{key}")
known_values = st.sampled_from(["chat", "execute_tool", "invoke_agent", "LLM", "TOOL", "CHAIN", "gpt-4o", "timeout", ""])


def as_mapped(value):
    """What an attribute value looks like in Span.attributes."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [as_mapped(item) for item in value]
    if isinstance(value, dict):
        return {key: as_mapped(item) for key, item in value.items()}
    return value


@st.composite
def generated_spans(draw):
    tokens = {
        draw(st.sampled_from(spellings)): draw(st.integers(0, 2**40))
        for field, spellings in TOKEN_SPELLINGS.items()
        if draw(st.booleans())
    }
    unknown = draw(st.dictionaries(unknown_keys, any_values, max_size=5))
    known = draw(st.dictionaries(st.sampled_from(KNOWN), known_values, max_size=4))
    start = draw(st.integers(0, 2**64 - 1 - 10**12))
    end = draw(st.sampled_from([0, start, start + draw(st.integers(0, 10**12))]))
    item = OtlpSpan(
        trace_id=draw(st.binary(min_size=16, max_size=16)),
        span_id=draw(st.binary(min_size=0, max_size=8)),
        parent_span_id=draw(st.sampled_from([b"", draw(st.binary(min_size=8, max_size=8))])),
        name=draw(st.text(max_size=30)),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        status=Status(code=draw(st.integers(0, 2)), message=draw(st.text(max_size=20))),
        attributes=key_values({**known, **unknown, **tokens}),
    )
    if draw(st.booleans()):
        item.events.add(name="exception").attributes.extend(
            key_values({"exception.type": draw(st.sampled_from(["TimeoutError", "KeyError"])), "exception.message": "m"})
        )
    return item, unknown, tokens


@st.composite
def generated_requests(draw):
    items = draw(st.lists(generated_spans(), min_size=1, max_size=4, unique_by=lambda generated: generated[0].span_id))
    resource = draw(st.dictionaries(unknown_keys, any_values, max_size=3))
    return export(*(item for item, _, _ in items), resource=resource), items, resource


@settings(max_examples=300, deadline=None)
@given(generated_requests())
def test_both_encodings_agree_on_any_request(generated):
    request, _, _ = generated
    mapped(request)  # asserts the protobuf and JSON batches are equal


@settings(max_examples=200, deadline=None)
@given(generated_requests())
def test_unknown_attributes_survive_and_token_counts_are_the_inputs(generated):
    request, items, resource = generated
    batch = mapped(request)
    by_id = {one.span_id: one for one in batch.spans}
    assert len(batch.spans) + len(batch.rejected) == len(items)
    for item, unknown, tokens in items:
        one = by_id.get(item.span_id.hex())
        if one is None:
            continue
        for key, value in unknown.items():
            assert one.attributes[key] == as_mapped(value)
        for key, value in resource.items():
            assert one.attributes[f"resource.{key}"] == as_mapped(value)
        for field, spellings in TOKEN_SPELLINGS.items():
            given_count = next((tokens[key] for key in spellings if key in tokens), 0)
            assert getattr(one, field) == given_count >= 0
