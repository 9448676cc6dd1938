"""Alerts through the whole pipeline: spans posted to a running `spanstream serve` fold into a
loop, the fold's health record reaches the alert engine, and a real receiver gets the webhook."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_alerts import SECRET, Receiver
from tests.test_end_to_end import _new_project


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    running, _ = serve_for_tests(settings, tmp_path_factory.mktemp("serve"), "alerts-serve", free_port(), env={
        "SPANSTREAM_ALERTS_POLL_SECONDS": "0.2", "SPANSTREAM_ALERTS_RETRY_BASE_SECONDS": "0.2"})
    yield running.base
    assert running.stop() == 0, running.log.read_text()[-3000:]


def test_a_looping_session_posted_over_http_pages_the_receiver(settings, server):
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    headers = {"X-API-Key": key}
    hook = Receiver(fail_first=1)
    try:
        rule = httpx.post(f"{server}/api/alerts/rules", headers=headers, json={
            "name": "loops", "kind": "session_tagged", "tags": ["loop_detected"], "webhook_url": hook.url,
            "secret": SECRET, "cooldown_seconds": 0})
        assert rule.status_code == 201, rule.text
        session, t0 = f"loop-{uuid.uuid4().hex[:8]}", datetime.now(UTC) - timedelta(minutes=1)
        spans = [{"span_id": "root", "span_type": "agent", "agent_name": "support", "started_at": t0.isoformat(),
                  "ended_at": (t0 + timedelta(seconds=9)).isoformat()}]
        spans += [{"span_id": f"call-{n}", "parent_span_id": "root", "span_type": "tool_call", "server_name": "docs-mcp",
                   "tool_name": "search", "input_args": {"q": "same"}, "started_at": (t0 + timedelta(seconds=n + 1)).isoformat(),
                   "ended_at": (t0 + timedelta(seconds=n + 1.5)).isoformat()} for n in range(3)]
        posted = httpx.post(f"{server}/api/traces/spans", headers=headers,
                            json=[{**span, "session_id": session} for span in spans])
        assert posted.status_code == 207 and posted.json()["accepted"] == 4

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(hook.requests) < 2:  # a 500 first, then the retry
            time.sleep(0.2)
        assert len(hook.requests) == 2, hook.requests
        body = hook.requests[1]["json"]
        assert (body["event"], body["incident"]["details"]["session_id"], body["incident"]["details"]["health_tag"]) == (
            "fired", session, "loop_detected")
        assert body["project"]["id"] == project_id

        alert_id = body["incident"]["id"]
        acked = httpx.post(f"{server}/api/alerts/{alert_id}/ack", headers=headers)
        assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
        one = httpx.get(f"{server}/api/alerts/{alert_id}", headers=headers).json()
        assert [(d["state"], d["attempts"], d["last_status"]) for d in one["deliveries"]] == [("delivered", 2, 200)]
    finally:
        hook.close()
