"""A price changed through the API reaches a running `spanstream serve`: new spans cost the new price."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from schemas.span import Span
from spanstream.producer import make_producer, publish_spans
from tests.clickhouse_seed import new_project
from tests.conftest import free_port
from tests.processes import serve_for_tests

TOKEN = "operator-token-for-the-fold-test"
REFRESH_SECONDS = 0.5


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    running, topics = serve_for_tests(settings, tmp_path_factory.mktemp("serve-pricing"), "pricing", free_port(), env={
        "SPANSTREAM_PRICING_REFRESH_SECONDS": str(REFRESH_SECONDS), "SPANSTREAM_OPERATOR_TOKEN": TOKEN})
    yield running.base, topics["spans"]
    assert running.stop() == 0, running.log.read_text()[-3000:]


def _nano_usd(input_tokens: int, output_tokens: int, price: dict) -> int:
    usd = (input_tokens * Decimal(price["input_usd_per_mtok"]) + output_tokens * Decimal(price["output_usd_per_mtok"])) / 10**6
    return int(usd * 10**9)


def _session_cost(base: str, key: str, session_id: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/api/agents/sessions/{session_id}", headers={"X-API-Key": key})
        if answer.status_code == 200:
            return answer.json()["cost_nano_usd"]
        assert answer.status_code == 404, answer.text
        time.sleep(0.3)
    pytest.fail(f"session {session_id} never showed up")


def test_a_price_added_through_the_api_prices_the_next_spans(settings, server):
    base, topic = server
    project_id, keys = asyncio.run(new_project(settings.postgres_dsn, "fold-pricing"))
    key, operator = keys["admin"], {"Authorization": f"Bearer {TOKEN}"}
    model = f"fold-model-{uuid.uuid4().hex[:8]}"
    producer = make_producer(settings)

    def publish(session_id: str, started_at: datetime) -> None:
        publish_spans(producer, topic, [Span(
            project_id=project_id, session_id=session_id, span_id=f"{session_id}-llm", span_type="llm",
            model_id=model, input_tokens=1000, output_tokens=100, started_at=started_at,
            ended_at=started_at + timedelta(milliseconds=300))])

    # The model did not exist when the worker started: its first price arrives by a reload.
    first = httpx.post(f"{base}/api/pricing", headers=operator, json={
        "model_id": model, "provider": "test", "display_name": "Fold model", "input_usd_per_mtok": "2",
        "output_usd_per_mtok": "8", "effective_from": "2020-01-01T00:00:00Z"})
    assert first.status_code == 201, first.text
    time.sleep(4 * REFRESH_SECONDS)
    publish("before-change", datetime.now(UTC))
    assert _session_cost(base, key, "before-change") == _nano_usd(1000, 100, first.json()["price"])

    change_at = datetime.now(UTC).replace(microsecond=0)
    second = httpx.post(f"{base}/api/pricing", headers=operator, json={
        "model_id": model, "input_usd_per_mtok": "3", "output_usd_per_mtok": "12",
        "effective_from": change_at.isoformat()})
    assert second.status_code == 201, second.text
    assert datetime.fromisoformat(second.json()["closed"]["effective_to"]) == change_at
    time.sleep(4 * REFRESH_SECONDS)
    publish("after-change", change_at + timedelta(seconds=1))
    # A span that ran before the change, arriving late, still costs the price of its own time.
    publish("late-span", change_at - timedelta(minutes=5))
    assert _session_cost(base, key, "after-change") == _nano_usd(1000, 100, second.json()["price"])
    assert _session_cost(base, key, "late-span") == _nano_usd(1000, 100, first.json()["price"])
    assert _nano_usd(1000, 100, second.json()["price"]) != _nano_usd(1000, 100, first.json()["price"])
