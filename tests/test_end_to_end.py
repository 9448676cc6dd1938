"""The walking skeleton: spans published to Kafka come back from the API of the project that owns them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from confluent_kafka import Producer

from api.repositories.projects import create_api_key, ensure_project
from schemas.span import Span
from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer, publish_spans
from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_kafka import consume


async def _new_project(dsn: str) -> tuple[str, str]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        project = await ensure_project(pool, f"e2e-{uuid.uuid4().hex[:8]}")
        return str(project.id), await create_api_key(pool, project.id, "test")
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    """`spanstream serve` in its own process, with its own chdb directory, topics and group."""
    running, topics = serve_for_tests(settings, tmp_path_factory.mktemp("serve"), "e2e", free_port())
    yield {"base": running.base, "topic": topics["spans"]}
    assert running.stop() == 0, running.log.read_text()[-3000:]


def _wait_for_spans(base: str, key: str, expected: int, session_id: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    items: list[dict] = []
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/api/spans", params={"session_id": session_id}, headers={"X-API-Key": key})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if len(items) >= expected:
            return items
        time.sleep(0.2)
    return items


def test_a_published_span_is_returned_by_the_api_of_its_project(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    _, other_key = asyncio.run(_new_project(settings.postgres_dsn))
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    session = f"session-{uuid.uuid4().hex[:8]}"
    spans = [
        Span(project_id=project_id, session_id=session, span_id=f"{session}-{i}", span_type="llm",
             model_id="gpt-4o", input_tokens=100 * i, output_tokens=10, started_at=started + timedelta(seconds=i),
             ended_at=started + timedelta(seconds=i, milliseconds=250))
        for i in range(3)
    ]
    # A plain confluent-kafka producer, as any producer would publish.
    publish_spans(make_producer(settings), server["topic"], spans)

    items = _wait_for_spans(server["base"], key, 3, session)
    assert [item["span_id"] for item in items] == [f"{session}-2", f"{session}-1", f"{session}-0"]
    newest = items[0]
    assert newest["input_tokens"] == 200 and newest["model_id"] == "gpt-4o"
    assert newest["latency_ms"] == 250
    assert datetime.fromisoformat(newest["started_at"]) == started + timedelta(seconds=2)

    # The same session asked for with another project's key shows nothing.
    other = httpx.get(f"{server['base']}/api/spans", params={"session_id": session}, headers={"Authorization": f"Bearer {other_key}"})
    assert other.status_code == 200 and other.json()["items"] == []


def test_a_span_delivered_twice_is_listed_once(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    session = f"dup-{uuid.uuid4().hex[:8]}"
    span = Span(project_id=project_id, session_id=session, span_id="only", started_at=datetime.now(UTC))
    publish_spans(make_producer(settings), server["topic"], [span, span])
    marker = Span(project_id=project_id, session_id=session, span_id="marker", started_at=datetime.now(UTC))
    publish_spans(make_producer(settings), server["topic"], [marker])
    items = _wait_for_spans(server["base"], key, 2, session)
    time.sleep(1)  # give a wrongly duplicated row the chance to show up
    items = _wait_for_spans(server["base"], key, 2, session)
    assert sorted(item["span_id"] for item in items) == ["marker", "only"]


def test_an_unreadable_message_goes_to_the_dead_letter_topic(settings, server):
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(server["topic"], key=b"bad-session", value=b'{"span_id": "no-project"}')
    producer.produce(server["topic"], key=b"bad-session", value=b"\xff not json")
    assert producer.flush(10) == 0
    dead = consume(settings, f"{server['topic']}.dlq", 2)
    assert [m.value() for m in dead] == [b'{"span_id": "no-project"}', b"\xff not json"]
    headers = [dict(m.headers()) for m in dead]
    assert "project_id" in headers[0]["error"].decode()
    assert headers[0]["source_topic"].decode() == server["topic"]
    assert int(headers[1]["source_offset"]) == int(headers[0]["source_offset"]) + 1


def test_requests_without_a_valid_key_are_refused(server):
    assert httpx.get(f"{server['base']}/api/spans").status_code == 401
    wrong = httpx.get(f"{server['base']}/api/spans", headers={"X-API-Key": "ss_000000000000_nope"})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]


def test_spans_posted_over_http_are_queryable(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    session = f"http-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    posted = [
        {"span_id": f"{session}-{i}", "session_id": session, "span_type": "tool_call", "server_name": "docs-mcp",
         "tool_name": "search", "started_at": (now + timedelta(seconds=i)).isoformat(), "status": "success"}
        for i in range(5)
    ]
    response = httpx.post(f"{server['base']}/api/traces/spans", json=posted, headers={"X-API-Key": key})
    assert response.status_code == 207 and response.json()["accepted"] == 5
    items = _wait_for_spans(server["base"], key, 5, session)
    assert sorted(item["span_id"] for item in items) == sorted(span["span_id"] for span in posted)
    assert {item["server_name"] for item in items} == {"docs-mcp"}


def test_a_bad_item_of_a_batch_is_dead_lettered_alone(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    session = f"batch-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    batch = [
        {"project_id": project_id, "span_id": "good-1", "session_id": session, "started_at": now},
        {"project_id": project_id, "span_id": "bad", "session_id": session, "started_at": now, "input_tokens": -5},
        {"project_id": project_id, "span_id": "good-2", "session_id": session, "started_at": now},
    ]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(server["topic"], key=session.encode(), value=json.dumps(batch).encode())
    assert producer.flush(10) == 0

    items = _wait_for_spans(server["base"], key, 2, session)
    assert sorted(item["span_id"] for item in items) == ["good-1", "good-2"]
    dead = [m for m in consume(settings, f"{server['topic']}.dlq", 3) if m.key() == session.encode()]
    assert len(dead) == 1
    assert json.loads(dead[0].value())["span_id"] == "bad"
    headers = dict(dead[0].headers())
    assert headers["source_index"] == b"1" and b"input_tokens" in headers["error"]


def test_a_session_is_folded_priced_and_tagged(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    session = f"fold-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    def at(seconds: float) -> str:
        return (t0 + timedelta(seconds=seconds)).isoformat()

    posted = [
        # delivered child-first, with the root last and one span twice
        {"span_id": "tool-2", "parent_span_id": "root", "span_type": "tool_call", "server_name": "docs-mcp",
         "tool_name": "search", "input_args": {"q": "b"}, "started_at": at(3), "ended_at": at(4)},
        {"span_id": "llm", "parent_span_id": "root", "span_type": "llm", "model_id": "anthropic/claude-sonnet-4-5",
         "agent_name": "support", "input_tokens": 1000, "cache_read_tokens": 600, "output_tokens": 200,
         "started_at": at(0.5), "ended_at": at(1.5)},
        {"span_id": "tool-1", "parent_span_id": "root", "span_type": "tool_call", "server_name": "docs-mcp",
         "tool_name": "search", "input_args": {"q": "a"}, "status": "error", "started_at": at(2), "ended_at": at(2.5)},
        {"span_id": "llm", "parent_span_id": "root", "span_type": "llm", "model_id": "anthropic/claude-sonnet-4-5",
         "agent_name": "support", "input_tokens": 1000, "cache_read_tokens": 600, "output_tokens": 200,
         "started_at": at(0.5), "ended_at": at(1.5)},
        {"span_id": "root", "span_type": "agent", "agent_name": "support", "started_at": at(0), "ended_at": at(5)},
    ]
    for span in posted:  # one request per span: they reach the worker as separate messages
        response = httpx.post(f"{server['base']}/api/traces/spans", json=[{**span, "session_id": session}],
                              headers={"X-API-Key": key})
        assert response.status_code == 207 and response.json()["accepted"] == 1

    deadline = time.monotonic() + 30
    found = None
    while time.monotonic() < deadline:
        response = httpx.get(f"{server['base']}/api/agents/sessions/{session}", headers={"X-API-Key": key})
        # The trace reads sessions and cost cells at once: a read may see the session's row
        # just before the cells written ahead of it.
        if response.status_code == 200 and response.json()["spans"] == 4 and response.json()["costs"]:
            found = response.json()
            break
        time.sleep(0.2)
    assert found is not None, "the session never reached 4 spans with its cost cells"
    assert (found["llm_calls"], found["tool_calls"], found["failed_calls"], found["errors"]) == (1, 2, 1, 1)
    assert (found["input_tokens"], found["cache_read_tokens"], found["output_tokens"]) == (1000, 600, 200)
    # Sonnet 4.5 list price: $3 input, $0.30 cache read, $15 output per million tokens.
    assert found["cost_nano_usd"] == (400 * 3 + 600 * 0.3 + 200 * 15) * 1000
    assert found["health_tag"] == "success_with_fallback"
    assert found["status"] == "closed" and found["duration_ms"] == 5000
    assert found["agents"] == ["support"] and found["servers"] == ["docs-mcp"]
    assert sum(cell["cost_nano_usd"] for cell in found["costs"]) == found["cost_nano_usd"]
    listed = httpx.get(f"{server['base']}/api/agents/sessions", headers={"X-API-Key": key}).json()["items"]
    assert [item["session_id"] for item in listed] == [session]
    assert httpx.get(f"{server['base']}/api/agents/sessions/{session}", headers={"X-API-Key": _other_key(settings)}).status_code == 404


def _other_key(settings) -> str:
    return asyncio.run(_new_project(settings.postgres_dsn))[1]


def test_the_summary_counts_the_projects_sessions(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    now = datetime.now(UTC)
    spans = [Span(project_id=project_id, session_id=f"sum-{i % 3}", span_id=f"sum-{i}", started_at=now) for i in range(7)]
    publish_spans(make_producer(settings), server["topic"], spans)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        summary = httpx.get(f"{server['base']}/api/agents/sessions/summary", headers={"X-API-Key": key}).json()
        if summary["spans"] == 7:
            break
        time.sleep(0.2)
    assert summary == {"sessions": 3, "open_sessions": 3, "spans": 7, "cost_nano_usd": 0}


def test_an_open_session_gone_quiet_reads_as_incomplete(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    quiet = Span(project_id=project_id, session_id="quiet", span_id="q1", span_type="llm", started_at=long_ago)
    done = Span(project_id=project_id, session_id="done", span_id="d1", span_type="agent", started_at=long_ago,
                ended_at=long_ago + timedelta(seconds=1))
    publish_spans(make_producer(settings), server["topic"], [quiet, done])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = httpx.get(f"{server['base']}/api/agents/sessions", headers={"X-API-Key": key}).json()["items"]
        if len(items) == 2:
            break
        time.sleep(0.2)
    assert {item["session_id"]: item["health_tag"] for item in items} == {"quiet": "incomplete", "done": "success"}
    filtered = httpx.get(f"{server['base']}/api/agents/sessions", params={"health_tag": "incomplete"},
                         headers={"X-API-Key": key}).json()["items"]
    assert [item["session_id"] for item in filtered] == ["quiet"]
