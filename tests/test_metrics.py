"""GET /metrics of a running `spanstream serve`: what an operator's Prometheus would scrape."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_end_to_end import _new_project


def scrape(base: str) -> dict[str, list]:
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, list], sample_name: str, **labels) -> float:
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    return sum(sample.value for sample in families.get(family, [])
               if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    running, topics = serve_for_tests(settings, tmp_path_factory.mktemp("serve"), "metrics", free_port())
    yield {"base": running.base, "topics": topics}
    assert running.stop() == 0, running.log.read_text()[-3000:]


def _span(session: str, index: int, at: datetime) -> dict:
    return {"span_id": f"{session}-{index}", "session_id": session, "span_type": "tool_call", "server_name": "docs-mcp",
            "tool_name": "search", "status": "success", "started_at": (at + timedelta(seconds=index)).isoformat(),
            "ended_at": (at + timedelta(seconds=index, milliseconds=80)).isoformat()}


def test_metrics_count_what_the_deployment_did(settings, server):
    base = server["base"]
    _, key = asyncio.run(_new_project(settings.postgres_dsn))
    session = f"metrics-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC) - timedelta(minutes=1)
    posted = [_span(session, i, at) for i in range(3)] + [{**_span(session, 9, at), "status": "exploded"}]
    answer = httpx.post(f"{base}/api/traces/spans", json=posted, headers={"X-API-Key": key})
    assert answer.status_code == 207 and answer.json()["accepted"] == 3
    # A message no producer should send: the fold worker (a child process) dead-letters it.
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(server["topics"]["spans"], key=b"junk", value=b"{not json")
    assert producer.flush(10) == 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = httpx.get(f"{base}/api/agents/sessions/{session}", headers={"X-API-Key": key})
        families = scrape(base)
        # The spans table's sink writes on its own clock, after the session can already be read.
        if (found.status_code == 200 and value(families, "spanstream_spans_dead_lettered_total") >= 1
                and value(families, "spanstream_sink_batch_rows_sum", table="spans") >= 3):
            break
        time.sleep(0.5)
    assert found.status_code == 200, found.text
    httpx.get(f"{base}/api/liveness")
    httpx.get(f"{base}/api/agents/sessions/{session}", headers={"X-API-Key": key})
    families = scrape(base)

    assert value(families, "spanstream_spans_ingested_total", endpoint="spans") == 3
    assert value(families, "spanstream_spans_rejected_total", endpoint="spans") == 1
    # Counted in the fold worker's process, shown by the serving one.
    assert value(families, "spanstream_spans_dead_lettered_total") == 1
    assert value(families, "spanstream_spans_folded_total") >= 3

    requests = families["spanstream_http_requests"]
    paths = {sample.labels["path"] for sample in requests}
    assert "/api/agents/sessions/{id}" in paths and "/api/traces/spans" in paths
    assert not any(session in path for path in paths), "ids must not become label values"
    assert "/api/liveness" not in paths and "/metrics" not in paths
    assert value(families, "spanstream_http_requests_total", method="POST", path="/api/traces/spans", status="207") == 1
    assert value(families, "spanstream_http_request_duration_seconds_count", path="/api/agents/sessions/{id}") >= 2

    assert value(families, "spanstream_sink_batch_rows_sum", table="spans") >= 3
    assert value(families, "spanstream_sink_batch_seconds_count", table="sessions") >= 1
    assert "spanstream_sessions_open" in families

    lags = families["spanstream_consumer_lag_messages"]
    groups = {(s.labels["group"], s.labels["topic"]) for s in lags}
    worker = server["topics"]["worker_id"]
    spans_topic = server["topics"]["spans"]
    assert {(f"{worker}-batcher", spans_topic), (worker, f"{spans_topic}.batches"),
            (f"{worker}-sink-spans", f"{spans_topic}.rows"), (f"{worker}-sink-sessions", server["topics"]["sessions"]),
            (f"{worker}-sink-health", server["topics"]["health"])} <= groups
    assert len([s for s in lags if s.labels["topic"] == spans_topic]) == settings.spans_partitions


def test_readiness_names_each_dependency(server):
    answer = httpx.get(f"{server['base']}/api/readiness")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {"kafka": "ok", "postgres": "ok", "clickhouse": "ok"}


def test_readiness_fails_while_kafka_is_unreachable(settings):
    async def check() -> httpx.Response:
        app = create_app(settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}), None)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream") as client:
                return await client.get("/api/readiness")

    answer = asyncio.run(check())
    assert answer.status_code == 503
    assert answer.json()["checks"]["kafka"].startswith("error") and answer.json()["checks"]["postgres"] == "ok"


def test_a_metrics_token_guards_the_scrape(settings):
    async def scrape_with(headers: dict[str, str]) -> httpx.Response:
        app = create_app(settings.model_copy(update={"metrics_token": "s3cret"}), None)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream") as client:
                return await client.get("/metrics", headers=headers)

    assert asyncio.run(scrape_with({})).status_code == 401
    assert asyncio.run(scrape_with({"Authorization": "Bearer wrong"})).status_code == 401
    allowed = asyncio.run(scrape_with({"Authorization": "Bearer s3cret"}))
    assert allowed.status_code == 200 and "spanstream_consumer_lag_messages" in allowed.text


def _exported_names() -> set[str]:
    from prometheus_client import Counter, Gauge, Histogram

    from spanstream import metrics

    names = {"spanstream_consumer_lag_messages", "spanstream_sessions_open"}  # read at scrape (api/metrics.py)
    for metric in vars(metrics).values():
        if isinstance(metric, Counter):
            names.add(f"{metric._name}_total")
        elif isinstance(metric, Histogram):
            names.update(f"{metric._name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        elif isinstance(metric, Gauge):
            names.add(metric._name)
    return names


def test_alert_rules_and_the_dashboard_only_use_metrics_that_exist():
    import json
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    rules = yaml.safe_load((root / "infra/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((root / "infra/grafana/dashboards/spanstream.json").read_text())
    expressions = [rule["expr"] for rule in rules] + [
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"spanstream_[a-z_]+", expr)}
    assert used and used <= _exported_names(), used - _exported_names()
    assert {rule["alert"] for rule in rules} >= {
        "SpanstreamApiErrorRate", "SpanstreamApiP99Latency", "SpanstreamConsumerLag", "SpanstreamMcpServerDown"}
