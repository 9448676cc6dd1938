"""`spanstream replay` while `spanstream serve` holds the embedded store: the server replays,
the live views answer throughout, and the command shows the server's progress."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from loadtests.generate import generate_sessions
from schemas.span import session_messages
from spanstream.producer import make_producer
from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_end_to_end import _new_project


def _wait_for_spans(base: str, key: str, spans: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = httpx.get(f"{base}/api/agents/sessions/summary", headers={"X-API-Key": key}).json()
        if summary["spans"] == spans:
            return summary
        time.sleep(0.3)
    return summary


def test_replay_through_the_serving_process(settings, tmp_path):
    port = free_port()
    running, topics = serve_for_tests(settings, tmp_path, "remote-replay", port)
    try:
        project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        spans = [span for session in generate_sessions(21, 30, 10, project_id, start) for span in session]
        producer = make_producer(settings)
        for message_key, value in session_messages(spans):
            producer.produce(topics["spans"], key=message_key, value=value)
        assert producer.flush(30) == 0
        before = _wait_for_spans(running.base, key, len(spans))
        assert before["sessions"] == 30

        # Without the operator token the server does nothing.
        refused = httpx.post(f"{running.base}/api/admin/replay", json={})
        assert refused.status_code == 401
        refused = httpx.post(f"{running.base}/api/admin/replay", json={}, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401

        env = {**os.environ, "SPANSTREAM_DATA_DIR": str(tmp_path), "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
               "SPANSTREAM_SPANS_TOPIC": topics["spans"], "SPANSTREAM_SESSIONS_TOPIC": topics["sessions"],
               "SPANSTREAM_HEALTH_TOPIC": topics["health"], "SPANSTREAM_WORKER_ID": topics["worker_id"],
               "SPANSTREAM_SPANS_PARTITIONS": str(settings.spans_partitions), "SPANSTREAM_API_PORT": str(port)}
        answers: list[int] = []
        stop = threading.Event()

        def read_live_views() -> None:
            while not stop.is_set():
                answers.append(httpx.get(f"{running.base}/api/agents/sessions", headers={"X-API-Key": key}).status_code)
                time.sleep(0.05)

        reader = threading.Thread(target=read_live_views)
        reader.start()
        try:
            done = subprocess.run([sys.executable, "-m", "spanstream.cli", "replay"], env=env, capture_output=True,
                                  text=True, timeout=180)
        finally:
            stop.set()
            reader.join()
        assert done.returncode == 0, done.stderr + done.stdout
        assert "running in the serving process" in done.stdout and "ETA" in done.stdout
        assert "swapped in" in done.stdout
        assert answers and set(answers) == {200}  # the live views answered throughout

        after = _wait_for_spans(running.base, key, len(spans))
        assert after == before
    finally:
        assert running.stop() == 0
