"""Sessions delivered in a hostile order come back from the API exactly as the ground truth says."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaError, Producer

from loadtests.ground_truth import GroundTruth, build
from spanstream.settings import Settings
from tests.conftest import free_port
from tests.processes import start_spanstream
from tests.test_end_to_end import _new_project

# The worker's flat charge for a call it has no price for; the ground truth charges the same.
UNKNOWN_MODEL_USD = "0.0025"


def serve_env(settings: Settings, data_dir: Path, name: str, port: int) -> dict[str, str]:
    """A `spanstream serve` of its own: data dir (so chdb), topics, consumer group and port."""
    return {
        "SPANSTREAM_DATA_DIR": str(data_dir),
        "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
        "SPANSTREAM_SPANS_TOPIC": f"{settings.spans_topic}-{name}",
        "SPANSTREAM_SESSIONS_TOPIC": f"{settings.sessions_topic}-{name}",
        "SPANSTREAM_HEALTH_TOPIC": f"{settings.health_topic}-{name}",
        "SPANSTREAM_WORKER_ID": f"{settings.worker_id}-{name}",
        "SPANSTREAM_SPANS_PARTITIONS": "3",
        "SPANSTREAM_API_PORT": str(port),
        "SPANSTREAM_SINK_BATCH_SECONDS": "0.2",
        "SPANSTREAM_UNKNOWN_MODEL_USD_PER_CALL": UNKNOWN_MODEL_USD,
        # The plan's open sessions are up to an hour old; `incomplete` has its own test.
        "SPANSTREAM_INCOMPLETE_AFTER_SECONDS": str(24 * 3600),
    }


def two_projects(settings: Settings) -> dict[str, str]:
    """{project_id: API key} of two fresh projects."""
    return dict(asyncio.run(_new_project(settings.postgres_dsn)) for _ in range(2))


def publish(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Raw messages, in order, with a plain producer configured as schemas/README.md says."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                         "acks": "all", "compression.type": "lz4", "linger.ms": 5})
    failures: list[KafkaError] = []
    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=lambda error, _: error and failures.append(error))
        producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures[:3]


def list_sessions(base: str, keys: dict[str, str]) -> dict[tuple[str, str], dict]:
    """Every session each project's key lists, by (project_id, session_id)."""
    listed = {}
    for project, key in keys.items():
        response = httpx.get(f"{base}/api/agents/sessions", params={"limit": 1000}, headers={"X-API-Key": key})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert len(items) < 1000, "more sessions than one page shows"
        listed.update({(project, item["session_id"]): item for item in items})
    return listed


def complete(listed: dict[tuple[str, str], dict], truth: GroundTruth) -> int:
    """How many sessions are listed with all their spans."""
    return sum(listed.get(key, {}).get("spans") == want.spans for key, want in truth.expected.items())


def wait_until_complete(base: str, keys: dict[str, str], truth: GroundTruth, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        listed = list_sessions(base, keys)
        done = complete(listed, truth)
        if done == len(truth.expected) or time.monotonic() > deadline:
            assert done == len(truth.expected), f"only {done} of {len(truth.expected)} sessions got all their spans"
            return listed
        time.sleep(0.5)


def _detail(base: str, key: str, session_id: str) -> dict | None:
    response = httpx.get(f"{base}/api/agents/sessions/{session_id}", headers={"X-API-Key": key})
    return response.json() if response.status_code == 200 else None


def _detail_differences(base: str, key: str, want) -> dict:
    found = _detail(base, key, want.session_id)
    if found is None:
        return {"status code": (200, 404)}
    diffs = want.differences(found)
    cells = sum(cell["cost_nano_usd"] for cell in found["costs"])
    if cells != found["cost_nano_usd"]:
        diffs["sum of costs"] = (found["cost_nano_usd"], cells)
    return diffs


def assert_matches_ground_truth(base: str, keys: dict[str, str], truth: GroundTruth, settle: float = 15.0) -> None:
    """Every listed and detailed session equals its ground truth; nothing else is listed. A session's
    cost cells are written just before its row, but the trace reads both at once, so mismatched
    details are read again for `settle` seconds."""
    listed = list_sessions(base, keys)
    assert set(listed) == set(truth.expected), (
        f"listed but not expected: {sorted(set(listed) - set(truth.expected))[:5]}; "
        f"expected but not listed: {sorted(set(truth.expected) - set(listed))[:5]}")
    wrong = {(*key, "list"): diffs for key, found in listed.items()
             if (diffs := truth.expected[key].differences(found))}
    details: dict[tuple[str, str], dict] = {}
    pending = sorted(truth.expected)
    deadline = time.monotonic() + settle
    while pending:
        details.update({key: _detail_differences(base, keys[key[0]], truth.expected[key]) for key in pending})
        pending = [key for key in pending if details[key]]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    wrong.update({(*key, "detail"): diffs for key, diffs in details.items() if diffs})
    report = "\n".join(f"{key}: {diffs}" for key, diffs in sorted(wrong.items())[:15])
    assert not wrong, f"{len(wrong)} reads of {len(truth.expected)} sessions differ from the ground truth:\n{report}"


def assert_projects_isolated(base: str, keys: dict[str, str], truth: GroundTruth) -> None:
    first, second = keys
    own = next(session for project, session in truth.expected if project == first and session not in truth.shared)
    assert _detail(base, keys[second], own) is None, "a session is readable with another project's key"
    for session_id in sorted(truth.shared)[:3]:
        by_project = [_detail(base, keys[project], session_id) for project in keys]
        assert by_project[0] != by_project[1]
        for project, found in zip(keys, by_project):
            assert truth.expected[(project, session_id)].differences(found) == {}


def assert_span_lists_exact(base: str, keys: dict[str, str], truth: GroundTruth, sessions: int = 6) -> None:
    """A session's span list has each span once, with its own project's values."""
    chosen = sorted(truth.resent)[:sessions] + [(project, sid) for project in keys for sid in sorted(truth.shared)[:2]]
    for project, session_id in chosen:
        response = httpx.get(f"{base}/api/spans", params={"session_id": session_id, "limit": 1000},
                             headers={"X-API-Key": keys[project]})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        sent = {span.span_id: span for span in truth.spans_by_project[project] if span.session_id == session_id}
        ids = [item["span_id"] for item in items]
        assert len(ids) == len(set(ids)), f"{session_id}: a span is listed twice"
        assert set(ids) == set(sent), f"{session_id}: spans differ"
        for item in items:
            span = sent[item["span_id"]]
            assert (item["status"], item["input_tokens"], item["output_tokens"]) == (
                span.status, span.input_tokens, span.output_tokens)


def test_a_hostile_delivery_gives_exactly_the_ground_truth(settings, tmp_path_factory):
    keys = two_projects(settings)
    truth = build(seed=20261122, sessions=300, project_ids=tuple(keys), unknown_model_usd=UNKNOWN_MODEL_USD)
    data_dir, port = tmp_path_factory.mktemp("ground-truth"), free_port()
    env = serve_env(settings, data_dir, "ground-truth", port)
    server = start_spanstream("serve", env, port, data_dir / "serve.log")
    try:
        started = time.monotonic()
        messages = truth.messages()
        publish(settings, env["SPANSTREAM_SPANS_TOPIC"], messages)
        wait_until_complete(server.base, keys, truth, timeout=120)
        print(f"\n{len(truth.expected)} sessions, {sum(map(len, truth.spans_by_project.values()))} spans in "
              f"{len(messages)} messages: all visible {time.monotonic() - started:.1f} s after publishing began")
        assert_matches_ground_truth(server.base, keys, truth)
        assert_projects_isolated(server.base, keys, truth)
        assert_span_lists_exact(server.base, keys, truth)
        assert server.stop() == 0, server.log.read_text()[-3000:]
    finally:
        if server.process.poll() is None:
            server.stop()
