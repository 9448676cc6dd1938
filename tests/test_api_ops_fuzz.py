"""Arbitrary input to the SLO, alert, pricing and SQL endpoints is answered 4xx, never 500."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from api.app import create_app
from tests.clickhouse_seed import new_project
from tests.conftest import free_port

TOKEN = "operator-token-for-fuzzing"
FIELDS = ["name", "kind", "agent_name", "target", "window_hours", "tags", "slo_id", "server_name", "budget_usd",
          "webhook_url", "secret", "enabled", "cooldown_seconds", "model_id", "provider", "display_name",
          "input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "effective_from", "effective_to",
          "sql"]
KINDS = ["success_rate", "p99_latency", "cost_budget", "session_tagged", "slo_breached", "mcp_server_down",
         "mcp_server_recovered", "cost_budget_crossed"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
           | st.sampled_from(KINDS + ["2025-01-01T00:00:00Z", "https://example.com/h", "00000000-0000-0000-0000-000000000000",
                                     "1e309", "-0", "99999999999999999999", "SELECT 1"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8) | json_values
ROUTES = [("POST", "/api/slos"), ("PUT", "/api/slos/{id}"), ("GET", "/api/slos/{id}"), ("DELETE", "/api/slos/{id}"),
          ("GET", "/api/slos"), ("GET", "/api/slos/status"), ("POST", "/api/alerts/rules"),
          ("PUT", "/api/alerts/rules/{id}"), ("GET", "/api/alerts/rules"), ("POST", "/api/pricing"),
          ("PATCH", "/api/pricing/{id}"), ("GET", "/api/pricing"), ("POST", "/api/sql")]


@pytest.fixture(scope="module")
def api(settings, store):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store, operator_token=TOKEN), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    _, keys = asyncio.run(new_project(settings.postgres_dsn, "fuzz"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"X-API-Key": keys["admin"]}) as client:
        yield client
    server.should_exit = True
    thread.join(10)


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, path_id=st.text(max_size=40) | st.uuids().map(str),
       params=st.dictionaries(st.sampled_from(["limit", "cursor", "model_id", "current", "hours"]), st.text(max_size=20), max_size=3),
       as_operator=st.booleans())
def test_no_input_makes_a_500(api, route, body, path_id, params, as_operator):
    method, path = route
    path = path.replace("{id}", quote(path_id, safe="") or "x")
    headers = {"Authorization": f"Bearer {TOKEN}"} if as_operator else {}
    if method in ("POST", "PUT", "PATCH"):
        # json.dumps, not httpx's encoder: NaN and Infinity are sent as Python writes them.
        headers["Content-Type"] = "application/json"
        answer = api.request(method, path, params=params, headers=headers, content=json.dumps(body))
    else:
        answer = api.request(method, path, params=params, headers=headers)
    assert answer.status_code < 500, (method, path, body, answer.text)
