"""HTTP ingestion of LangSight-compatible JSON, through the app with its lifespan, on real Kafka."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.ratelimit import SpanRateLimiter
from api.repositories.projects import create_api_key, ensure_project
from schemas.span import PAYLOAD_CAP
from spanstream.kafka import ensure_topics
from tests.kafka_helpers import read_all_spans

pytestmark = pytest.mark.anyio
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def project(settings):
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=1)
    try:
        found = await ensure_project(pool, f"ingest-{uuid.uuid4().hex[:8]}")
        yield str(found.id), await create_api_key(pool, found.id, "test")
    finally:
        await pool.close()


@asynccontextmanager
async def client_for(settings, **overrides):
    """An app with its own topic (and any settings overridden), its lifespan running."""
    settings = settings.model_copy(update={"spans_topic": f"ingest-{uuid.uuid4().hex[:10]}", **overrides})
    if "kafka_bootstrap" not in overrides:
        ensure_topics(settings)
    app = create_app(settings, None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spanstream") as client:
            client.settings, client.app = settings, app
            yield client


def langsight_span(**fields):
    """Shaped like the LangSight SDK's ToolCallSpan as it is posted."""
    span = {
        "span_id": str(uuid.uuid4()), "parent_span_id": None, "span_type": "tool_call", "trace_id": None,
        "session_id": "sess-1", "server_name": "jira-mcp", "tool_name": "get_issue",
        "started_at": NOW.isoformat(), "ended_at": (NOW + timedelta(milliseconds=420)).isoformat(),
        "latency_ms": 420.0, "status": "success", "error": None, "agent_name": "support-agent",
        "input_args": {"issue": "OPS-1"}, "output_result": "{\"title\": \"Down\"}", "llm_input": None,
        "llm_output": None, "replay_of": None, "project_id": None, "input_tokens": None,
        "output_tokens": None, "model_id": None,
    }
    span.update(fields)
    return span


async def test_langsight_spans_round_trip_to_kafka(settings, project):
    project_id, key = project
    posted = [langsight_span(), langsight_span(session_id="sess-2", span_type="agent", project_id="someone-else")]
    async with client_for(settings) as client:
        response = await client.post("/api/traces/spans", json=posted, headers={"X-API-Key": key})
        assert response.status_code == 207, response.text
        assert response.json()["accepted"] == 2 and response.json()["rejected"] == 0
        spans = {s.span_id: s for s in read_all_spans(settings.kafka_bootstrap, client.settings.spans_topic)}
    assert set(spans) == {posted[0]["span_id"], posted[1]["span_id"]}
    first = spans[posted[0]["span_id"]]
    assert first.project_id == project_id  # the key decides the project
    assert spans[posted[1]["span_id"]].project_id == project_id
    assert (first.session_id, first.server_name, first.tool_name, first.status) == ("sess-1", "jira-mcp", "get_issue", "success")
    assert first.input_args == '{"issue":"OPS-1"}' and first.latency_ms == 420.0
    assert first.started_at == NOW and first.input_tokens == 0


async def test_each_bad_span_is_rejected_with_its_reason_and_the_rest_accepted(settings, project):
    _, key = project
    good = langsight_span()
    posted = [
        langsight_span(started_at=None),
        good,
        langsight_span(ended_at=(NOW - timedelta(seconds=1)).isoformat()),
        "not a span",
        langsight_span(status="exploded"),
        good,  # a duplicate span id is accepted; downstream dedups it
    ]
    async with client_for(settings) as client:
        response = await client.post("/api/traces/spans", json=posted, headers={"Authorization": f"Bearer {key}"})
        body = response.json()
        spans = read_all_spans(settings.kafka_bootstrap, client.settings.spans_topic)
    assert response.status_code == 207
    assert (body["accepted"], body["rejected"]) == (2, 4)
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [(0, "rejected"), (1, "accepted"), (2, "rejected"), (3, "rejected"), (4, "rejected"), (5, "accepted")]
    reasons = {r["index"]: r.get("reason", "") for r in body["results"]}
    assert "started_at" in reasons[0]
    assert "ended_at is before started_at" in reasons[2]
    assert reasons[3] == "not a JSON object"
    assert "status" in reasons[4]
    assert [s.span_id for s in spans] == [good["span_id"], good["span_id"]]


async def test_oversized_payloads_are_truncated_and_flagged(settings, project):
    _, key = project
    posted = [langsight_span(llm_output="x" * (PAYLOAD_CAP + 10), error="e" * 9000)]
    async with client_for(settings) as client:
        response = await client.post("/api/traces/spans", json=posted, headers={"X-API-Key": key})
        [span] = read_all_spans(settings.kafka_bootstrap, client.settings.spans_topic)
    result = response.json()["results"][0]
    assert result["status"] == "accepted" and "error, llm_output" in result["reason"]
    assert len(span.llm_output) == PAYLOAD_CAP and span.truncated_fields == ["error", "llm_output"]


async def test_a_gzipped_body_is_accepted(settings, project):
    _, key = project
    body = gzip.compress(json.dumps([langsight_span()]).encode())
    async with client_for(settings) as client:
        response = await client.post(
            "/api/traces/spans", content=body,
            headers={"X-API-Key": key, "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    assert response.status_code == 207 and response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "content, headers, status, words",
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"span_id": "a"}', {}, 400, "JSON array"),
        (b"\x1f\x8b corrupt", {"Content-Encoding": "gzip"}, 400, "gzip body is corrupt"),
        (b"[]", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
        (b"[" + b" " * 5000 + b"]", {}, 413, "over the 4096 byte limit"),
        (gzip.compress(b"[" + b" " * 50_000 + b"]"), {"Content-Encoding": "gzip"}, 413, "over the 4096 byte limit"),
    ],
    ids=["not-json", "not-a-list", "corrupt-gzip", "unknown-encoding", "too-large", "gzip-bomb"],
)
async def test_bad_bodies_get_a_clear_error(settings, project, content, headers, status, words):
    _, key = project
    async with client_for(settings, ingest_max_body_bytes=4096) as client:
        response = await client.post("/api/traces/spans", content=content, headers={"X-API-Key": key, **headers})
    assert response.status_code == status and words in response.json()["detail"]


async def test_a_chunked_body_over_the_limit_is_refused(settings, project):
    _, key = project

    async def chunks():
        for _ in range(10):
            yield b" " * 1000

    async with client_for(settings, ingest_max_body_bytes=4096) as client:
        response = await client.post("/api/traces/spans", content=chunks(), headers={"X-API-Key": key})
    assert response.status_code == 413


async def test_over_the_rate_limit_is_answered_429_with_retry_after(settings, project):
    _, key = project
    async with client_for(settings) as client:
        # A stopped clock: however slow Kafka's first ack is, the bucket does not refill meanwhile.
        client.app.state.limiter = SpanRateLimiter(10, clock=lambda: 0.0)
        first = await client.post("/api/traces/spans", json=[langsight_span() for _ in range(15)], headers={"X-API-Key": key})
        second = await client.post("/api/traces/spans", json=[langsight_span() for _ in range(15)], headers={"X-API-Key": key})
        spans = read_all_spans(settings.kafka_bootstrap, client.settings.spans_topic)
    assert first.status_code == 207
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"  # 10 more spans at 10/s
    assert len(spans) == 15  # the refused request left nothing behind


async def test_without_kafka_ingestion_answers_503_and_accepts_nothing(settings, project):
    _, key = project
    async with client_for(settings, kafka_bootstrap="127.0.0.1:1", ingest_ack_timeout_seconds=1) as client:
        response = await client.post("/api/traces/spans", json=[langsight_span()], headers={"X-API-Key": key})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "not accepted" in response.json()["detail"]


async def test_without_a_valid_key_nothing_is_ingested(settings):
    async with client_for(settings) as client:
        missing = await client.post("/api/traces/spans", json=[langsight_span()])
        wrong = await client.post("/api/traces/spans", json=[langsight_span()], headers={"X-API-Key": "ss_123456789012_x"})
        spans = read_all_spans(settings.kafka_bootstrap, client.settings.spans_topic)
    assert missing.status_code == 401 and wrong.status_code == 401
    assert spans == []


async def test_when_keys_cannot_be_checked_ingestion_answers_503(settings, project):
    _, key = project
    async with client_for(settings) as client:
        await client.app.state.pool.close()  # PostgreSQL gone for this process
        response = await client.post("/api/traces/spans", json=[langsight_span()], headers={"X-API-Key": key})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


async def test_a_viewer_key_reads_but_cannot_publish_spans(settings, project):
    project_id, _ = project
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=1)
    try:
        viewer = await create_api_key(pool, uuid.UUID(project_id), "dashboard", role="viewer")
    finally:
        await pool.close()
    async with client_for(settings) as client:
        response = await client.post("/api/traces/spans", json=[langsight_span()], headers={"X-API-Key": viewer})
        assert response.status_code == 403
        assert "member role" in response.json()["detail"]
        assert read_all_spans(client.settings.kafka_bootstrap, client.settings.spans_topic, timeout=5) == []
