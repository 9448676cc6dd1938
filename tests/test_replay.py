"""Replay rebuilds the derived views from the topic, and they equal the live worker's."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from loadtests.generate import generate_sessions
from schemas.span import session_messages
from spanstream.producer import make_producer
from spanstream.replay import replay
from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_end_to_end import _new_project

COMPARED = ("spans", "llm_calls", "tool_calls", "failed_calls", "errors", "agents", "servers", "models",
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "thinking_tokens",
            "cost_nano_usd", "unpriced_calls", "health_tag", "status", "version", "duration_ms")


@pytest.fixture(scope="module")
def live(settings, tmp_path_factory):
    running, topics = serve_for_tests(settings, tmp_path_factory.mktemp("replay"), "replay", free_port())
    yield running, topics
    assert running.stop() == 0


def test_replayed_views_equal_the_live_ones(settings, store, live):
    running, topics = live
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    sessions = generate_sessions(11, 40, 12, project_id, start)
    spans = [span for session in sessions for span in session]
    # Hostile delivery: shuffled, split into several messages, some spans twice.
    delivery = spans + random.Random(3).sample(spans, 30)
    random.Random(4).shuffle(delivery)
    producer = make_producer(settings)
    for index in range(0, len(delivery), 7):
        for message_key, value in session_messages(delivery[index:index + 7]):
            producer.produce(topics["spans"], key=message_key, value=value)
    assert producer.flush(30) == 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = httpx.get(f"{running.base}/api/agents/sessions/summary", headers={"X-API-Key": key}).json()
        if summary["spans"] == len(spans):
            break
        time.sleep(0.3)
    assert summary["spans"] == len(spans) and summary["sessions"] == 40

    lines: list[str] = []
    replay_settings = settings.model_copy(update={"spans_topic": topics["spans"], "worker_id": topics["worker_id"]})
    progress = replay(replay_settings, store, report=lines.append)
    assert progress.spans == len(delivery)
    assert any("ETA" in line for line in lines) and "swapped in spans, sessions" in lines[-1]

    replayed = {row["session_id"]: row for row in store.query_sync(
        "SELECT * FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
    assert len(replayed) == 40
    for session_id, row in replayed.items():
        live_row = httpx.get(f"{running.base}/api/agents/sessions/{session_id}", headers={"X-API-Key": key}).json()
        assert {name: live_row[name] for name in COMPARED} == {name: row[name] for name in COMPARED}, session_id
        live_costs = sum(cell["cost_nano_usd"] for cell in live_row["costs"])
        assert live_costs == row["cost_nano_usd"]
    replayed_spans = store.query_sync("SELECT count() AS n FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id})
    assert replayed_spans[0]["n"] == len(spans)

    # A second replay, costs only, changes nothing: the views are a function of the log.
    replay(replay_settings, store, reprice=True, report=lines.append)
    again = {row["session_id"]: row for row in store.query_sync(
        "SELECT * FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
    assert again == replayed

    # --from: only sessions with spans since then are rebuilt, in place, from all their spans.
    since = datetime.now(UTC)
    time.sleep(0.01)
    touched = sessions[0][0].session_id
    late = sessions[0][1].model_copy(update={"span_id": "late-span", "started_at": start + timedelta(minutes=20),
                                             "ended_at": start + timedelta(minutes=21)})
    fresh = sessions[1][0].model_copy(update={"session_id": "fresh-session", "span_id": "fresh-1"})
    for message_key, value in session_messages([late, fresh]):
        producer.produce(topics["spans"], key=message_key, value=value)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = httpx.get(f"{running.base}/api/agents/sessions/summary", headers={"X-API-Key": key}).json()
        if summary["spans"] == len(spans) + 2:
            break
        time.sleep(0.3)
    lines.clear()
    replay(replay_settings, store, since=since, report=lines.append)
    assert any("2 sessions have spans since" in line for line in lines), lines
    after = {row["session_id"]: row for row in store.query_sync(
        "SELECT * FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
    assert set(after) == set(replayed) | {"fresh-session"}
    for session_id in (touched, "fresh-session"):
        live_row = httpx.get(f"{running.base}/api/agents/sessions/{session_id}", headers={"X-API-Key": key}).json()
        assert {name: live_row[name] for name in COMPARED} == {name: after[session_id][name] for name in COMPARED}
    assert after[touched]["spans"] == replayed[touched]["spans"] + 1
    untouched = [s for s in replayed if s != touched]
    assert all(after[s] == replayed[s] for s in untouched)
