"""A real OpenTelemetry SDK exports agent traces over OTLP/HTTP to `spanstream ingest`, both encodings."""

from __future__ import annotations

import asyncio
import gzip
import uuid

import httpx
import pytest
from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonExporter
from opentelemetry.exporter.otlp.proto.http import Compression as ProtoCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtobufExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from spanstream.kafka import ensure_topics
from tests.conftest import free_port
from tests.kafka_helpers import read_all_spans
from tests.processes import start_spanstream
from tests.test_end_to_end import _new_project


@pytest.fixture(scope="module")
def ingest(settings, tmp_path_factory):
    """`spanstream ingest`: the API without an analytics store, on its own topic."""
    port = free_port()
    topic = f"{settings.spans_topic}-otlp"
    ensure_topics(settings.model_copy(update={"spans_topic": topic}))
    running = start_spanstream("ingest", {
        "SPANSTREAM_DATA_DIR": str(tmp_path_factory.mktemp("ingest")),
        "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
        "SPANSTREAM_SPANS_TOPIC": topic,
        "SPANSTREAM_API_PORT": str(port),
    }, port, tmp_path_factory.mktemp("ingest-log") / "ingest.log", ready="/api/liveness")
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    yield {"base": running.base, "topic": topic, "project_id": project_id, "key": key}
    assert running.stop() == 0, running.log.read_text()[-3000:]


def record_agent_run(conversation: str) -> list:
    """An agent run as GenAI-instrumented code records it: agent, LLM call, failing MCP tool."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("support-bot", "1.2.3")
    common = {"gen_ai.conversation.id": conversation}
    with tracer.start_as_current_span("invoke_agent support", attributes={
        **common, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support"}):
        with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes={
            **common, "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80,
            "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.response.finish_reasons": ["tool_use"],
            "team.cost_center": "cx-42"}):
            pass
        with tracer.start_as_current_span("execute_tool search_docs", attributes={
            **common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_docs",
            "mcp.server.name": "docs-mcp", "gen_ai.tool.call.arguments": '{"q": "refunds"}'}) as tool:
            tool.set_status(Status(StatusCode.ERROR, "upstream returned 502"))
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("path", ["/v1/traces", "/api/traces/otlp"])
def test_an_otel_sdk_agent_trace_arrives_as_span_v1(ingest, settings, encoding, path):
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    finished = record_agent_run(conversation)
    # The ingest process publishes to its own topic; read what it wrote there, filtered by session.
    headers = {"X-API-Key": ingest["key"]}
    if encoding == "protobuf":
        exporter = ProtobufExporter(endpoint=ingest["base"] + path, headers=headers, compression=ProtoCompression.Gzip)
    else:
        exporter = JsonExporter(endpoint=ingest["base"] + path, headers=headers, compression=JsonCompression.GZIP)
    assert exporter.export(finished) == SpanExportResult.SUCCESS
    exporter.shutdown()

    spans = [s for s in read_all_spans(settings.kafka_bootstrap, ingest["topic"]) if s.session_id == conversation]
    by_type = {span.span_type: span for span in spans}
    assert sorted(by_type) == ["agent", "llm", "tool_call"]
    assert {span.project_id for span in spans} == {ingest["project_id"]}
    assert len({span.trace_id for span in spans}) == 1

    agent, llm, tool = by_type["agent"], by_type["llm"], by_type["tool_call"]
    assert agent.agent_name == "support" and agent.parent_span_id is None
    assert llm.parent_span_id == agent.span_id and tool.parent_span_id == agent.span_id
    assert llm.model_id == "claude-sonnet-4-5-20250929"
    assert (llm.input_tokens, llm.output_tokens, llm.cache_read_tokens) == (1200, 80, 1000)
    assert llm.finish_reason == "tool_use"
    assert llm.attributes["team.cost_center"] == "cx-42"  # unknown attributes are kept
    assert llm.attributes["resource.service.name"] == "support-bot"
    assert (tool.tool_name, tool.server_name, tool.status, tool.error) == ("search_docs", "docs-mcp", "error", "upstream returned 502")
    assert tool.input_args == '{"q": "refunds"}'
    assert all(span.latency_ms is not None and span.latency_ms >= 0 for span in spans)


def test_spans_that_cannot_be_read_are_reported_as_partial_success(ingest, settings):
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    good = scope_spans.spans.add(trace_id=bytes(16 * [1]), span_id=bytes(8 * [2]), name="ok",
                                 start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_001_000_000_000)
    good.attributes.add(key="session.id").value.string_value = conversation
    scope_spans.spans.add(trace_id=bytes(16 * [1]), span_id=bytes(8 * [3]), name="no start time")
    response = httpx.post(
        ingest["base"] + "/v1/traces", content=gzip.compress(request.SerializeToString()),
        headers={"X-API-Key": ingest["key"], "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "0303030303030303" in answer.partial_success.error_message
    assert "start" in answer.partial_success.error_message
    spans = [s for s in read_all_spans(settings.kafka_bootstrap, ingest["topic"]) if s.session_id == conversation]
    assert [s.span_id for s in spans] == ["0202020202020202"]


@pytest.mark.parametrize(
    "content_type, body, status",
    [("application/x-protobuf", b"\xff\xff garbage", 400), ("application/json", b'{"resourceSpans": 7}', 400),
     ("text/plain", b"hello", 415)],
    ids=["garbage-protobuf", "wrong-json", "unknown-content-type"],
)
def test_unreadable_otlp_requests_get_a_clear_error(ingest, content_type, body, status):
    response = httpx.post(ingest["base"] + "/v1/traces", content=body,
                          headers={"X-API-Key": ingest["key"], "Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["detail"]
