"""Project isolation on every endpoint: a caller of project A, by API key or by login, gets 404
for anything of project B and finds none of B's data in any answer.

The operations come from the OpenAPI schema, so an endpoint added later is either covered here
(its path parameters get B's identifiers from `b` below) or makes this test fail until it is."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.alerts.events import Opening
from api.app import create_app
from api.repositories.alerts import open_incident, rules_of_kind
from loadtests.generate import generate_session
from loadtests.query_seed import write_sessions
from schemas.pricing import PriceBook
from tests.metadata import PASSWORD, bearer, login, new_user, unique

pytestmark = pytest.mark.anyio
# Global or operator-only: not a project's resources.
NOT_PROJECT_SCOPED = {"/api/admin/replay/{job_id}", "/api/pricing/{price_id}"}
# Bodies that pass validation, so that the answer is about whose resource it is.
SLO = {"name": "b-latency", "kind": "p99_latency", "target": 900, "window_hours": 24}
RULE = {"name": "b-loops", "kind": "session_tagged", "tags": ["loop_detected"],
        "webhook_url": "http://127.0.0.1:9/b-hook"}
BODIES = {
    ("PATCH", "/api/projects/{project}"): {"name": "taken over"},
    ("PATCH", "/api/projects/{project}/members/{user_id}"): {"role": "viewer"},
    ("POST", "/api/projects/{project}/invites"): {"email": "intruder@example.com", "role": "admin"},
    ("POST", "/api/projects/{project}/keys"): {"name": "intruder", "role": "admin"},
    ("PUT", "/api/slos/{slo_id}"): {**SLO, "target": 1234},
    ("PUT", "/api/alerts/rules/{rule_id}"): {**RULE, "name": "taken over"},
    ("POST", "/api/alerts/rules/{rule_id}/snooze"): {"minutes": 30},
    ("POST", "/api/alerts/{alert_id}/snooze"): {"minutes": 30},
    ("PATCH", "/api/mcp/servers/{name}"): {"enabled": True},
}


async def _as_b_admin(client: httpx.AsyncClient, headers: dict, method: str, path: str, body: dict) -> dict:
    answer = await client.request(method, path, json=body, headers=headers)
    assert answer.status_code in (200, 201), (path, answer.text)
    return answer.json()


@pytest.fixture
async def world(settings, store):
    app = create_app(settings, store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream") as client:
            owner_a = await new_user(settings, unique("iso-a"))
            owner_b = await new_user(settings, unique("iso-b"))
            # new_user creates the project named by the slug; find each user's project again.
            token_a, token_b = await login(client, owner_a), await login(client, owner_b)
            project_a = (await client.get("/api/auth/me", headers=bearer(token_a))).json()["projects"][0]
            project_b = (await client.get("/api/auth/me", headers=bearer(token_b))).json()["projects"][0]
            b_headers = bearer(token_b, project_b["id"])
            key_a = (await _as_b_admin(client, bearer(token_a, project_a["id"]), "POST",
                                       f"/api/projects/{project_a['id']}/keys", {"name": "a", "role": "admin"}))["key"]
            b = {"project": project_b["id"]}
            b["key_id"] = (await _as_b_admin(client, b_headers, "POST", f"/api/projects/{b['project']}/keys",
                                             {"name": "b-key", "role": "viewer"}))["id"]
            b["invite_id"] = (await _as_b_admin(client, b_headers, "POST", f"/api/projects/{b['project']}/invites",
                                                {"email": f"{unique('b')}@example.com", "role": "viewer"}))["id"]
            members = (await client.get(f"/api/projects/{b['project']}/members", headers=b_headers)).json()["items"]
            b["user_id"] = members[0]["user_id"]
            b["slo_id"] = (await _as_b_admin(client, b_headers, "POST", "/api/slos", SLO))["id"]
            b["rule_id"] = (await _as_b_admin(client, b_headers, "POST", "/api/alerts/rules", RULE))["id"]
            # An incident of B's, opened the way the alert engine opens one.
            rule = next(r for r in await rules_of_kind(app.state.pool, uuid.UUID(b["project"]), ("session_tagged",))
                        if str(r["id"]) == b["rule_id"])
            incident = await open_incident(app.state.pool, rule, Opening("iso-b", "B's incident"), repeat_seconds=0)
            b["alert_id"] = str(incident["id"])
            session = generate_session(7, 0, 12, b["project"], datetime.now(UTC) - timedelta(minutes=30))
            write_sessions(store, [session], PriceBook([], 0))
            b["session_id"] = session[0].session_id
            b["name"] = next(span.server_name for span in session if span.server_name)
            b["agent"] = next(span.agent_name for span in session if span.agent_name)
            # B registers the MCP server its spans call, so /api/mcp/servers/{name} has something of B's.
            await _as_b_admin(client, b_headers, "POST", "/api/mcp/servers", {
                "name": b["name"], "transport": "streamable_http", "url": "http://127.0.0.1:9/mcp", "enabled": False})
            client.app = app
            yield {"client": client, "a_key": {"X-API-Key": key_a}, "b_login": b_headers,
                   "a_login": bearer(token_a, project_a["id"]), "b": b}


def _operations(app) -> list[tuple[str, str]]:
    schema = app.openapi()
    return [(method.upper(), path) for path, operations in schema["paths"].items() for method in operations]


@pytest.mark.parametrize("credential", ["a_key", "a_login"])
async def test_nothing_of_another_project_is_found_or_changed(world, credential):
    client, b, headers = world["client"], world["b"], world[credential]
    named = 0
    for method, path in _operations(client.app):
        if "{" not in path or path in NOT_PROJECT_SCOPED:
            continue
        parameters = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        missing = parameters - b.keys()
        assert not missing, f"{method} {path}: give project B a {missing} in the `world` fixture"
        url = path.format(**{name: b[name] for name in parameters})
        answer = await client.request(method, url, json=BODIES.get((method, path)), headers=headers)
        assert answer.status_code == 404, f"{method} {url} as {credential}: {answer.status_code} {answer.text[:300]}"
        named += 1
    assert named >= 15
    # And B's things are all still there.
    b_headers = world["b_login"]
    for path in (f"/api/projects/{b['project']}", f"/api/slos/{b['slo_id']}", f"/api/alerts/rules/{b['rule_id']}",
                 f"/api/agents/sessions/{b['session_id']}", f"/api/mcp/servers/{b['name']}"):
        assert (await client.get(path, headers=b_headers)).status_code == 200, path
    project = await client.get(f"/api/projects/{b['project']}", headers=b_headers)
    assert project.json()["name"] != BODIES[("PATCH", "/api/projects/{project}")]["name"]
    slo = (await client.get(f"/api/slos/{b['slo_id']}", headers=b_headers)).json()
    assert (slo["kind"], slo["target"]) == (SLO["kind"], SLO["target"])
    rule = (await client.get(f"/api/alerts/rules/{b['rule_id']}", headers=b_headers)).json()
    assert rule["name"] == RULE["name"]
    server = await client.get(f"/api/mcp/servers/{b['name']}", headers=b_headers)
    assert server.status_code == 200 and server.json()["enabled"] is False
    keys = (await client.get(f"/api/projects/{b['project']}/keys", headers=b_headers)).json()["items"]
    assert [key["revoked_at"] for key in keys if key["id"] == b["key_id"]] == [None]
    incident = (await client.get(f"/api/alerts/{b['alert_id']}", headers=b_headers)).json()
    assert incident["state"] == "firing", incident


@pytest.mark.parametrize("credential", ["a_key", "a_login"])
async def test_no_answer_of_the_callers_project_shows_another_projects_data(world, credential):
    client, b, headers = world["client"], world["b"], world[credential]
    secrets = [b["session_id"], b["project"], b["slo_id"], b["rule_id"], b["key_id"], b["invite_id"], b["alert_id"]]
    listed = 0
    for method, path in _operations(client.app):
        # The live event stream never ends; test_live_feed checks it shows only the caller's project.
        if method != "GET" or "{" in path or path in ("/api/liveness", "/api/readiness", "/api/live/events"):
            continue
        answer = await client.get(path, headers=headers)
        assert answer.status_code < 500, f"GET {path}: {answer.text[:300]}"
        leaked = [secret for secret in secrets if secret in answer.text]
        assert not leaked, f"GET {path} as {credential} shows project B's {leaked}"
        listed += 1
    assert listed >= 10
