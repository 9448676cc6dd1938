"""Alert rule configuration: each kind, validation, secrets never shown again, roles and isolation."""

from __future__ import annotations

import pytest

from tests.clickhouse_seed import new_project
from tests.test_api_sql import client_for

pytestmark = pytest.mark.anyio
HOOK = "https://hooks.example.com/spanstream"
SECRET = "s3cret-signing-key-0123456789"


@pytest.fixture
async def project(settings):
    project_id, keys = await new_project(settings.postgres_dsn, "alerts", ("admin", "member", "viewer"))
    _, other = await new_project(settings.postgres_dsn, "alerts-other", ("member",))
    return {"id": project_id, **keys, "other": other["member"]}


def _h(key):
    return {"X-API-Key": key}


async def _slo(client, key):
    answer = await client.post("/api/slos", headers=_h(key), json={
        "name": "fast", "kind": "p99_latency", "target": 500, "window_hours": 1})
    return answer.json()["id"]


async def test_every_kind_of_rule_is_stored_and_its_secret_never_shown(settings, store, project):
    async with client_for(settings, store) as client:
        slo_id = await _slo(client, project["member"])
        bodies = [
            {"kind": "session_tagged", "tags": ["loop_detected", "timeout", "loop_detected"], "secret": SECRET},
            {"kind": "slo_breached", "slo_id": slo_id},
            {"kind": "mcp_server_down", "server_name": "jira-mcp", "cooldown_seconds": 60},
            {"kind": "mcp_server_recovered"},
            {"kind": "cost_budget_crossed", "budget_usd": "12.5", "window_hours": 24, "enabled": False},
        ]
        made = []
        for body in bodies:
            answer = await client.post("/api/alerts/rules", headers=_h(project["member"]),
                                       json={"name": body["kind"], "webhook_url": HOOK, **body})
            assert answer.status_code == 201, answer.text
            assert SECRET not in answer.text
            made.append(answer.json())
        tagged, breached, down, recovered, budget = made
        assert tagged["tags"] == ["loop_detected", "timeout"] and tagged["has_secret"] is True
        assert breached["slo_id"] == slo_id and breached["has_secret"] is False
        assert (down["server_name"], down["cooldown_seconds"]) == ("jira-mcp", 60)
        assert recovered["server_name"] is None  # any server
        assert (budget["budget_usd"], budget["window_hours"], budget["enabled"]) == ("12.500000", 24, False)

        listed = await client.get("/api/alerts/rules", headers=_h(project["viewer"]))
        assert [r["id"] for r in listed.json()["items"]] == [r["id"] for r in made]
        assert SECRET not in listed.text

        # Deleting the SLO deletes the rule that watched it.
        assert (await client.delete(f"/api/slos/{slo_id}", headers=_h(project["member"]))).status_code == 204
        gone = await client.get(f"/api/alerts/rules/{breached['id']}", headers=_h(project["viewer"]))
        assert gone.status_code == 404


async def test_replacing_a_rule_keeps_or_removes_the_secret(settings, store, project):
    async with client_for(settings, store) as client:
        made = (await client.post("/api/alerts/rules", headers=_h(project["member"]), json={
            "name": "loops", "kind": "session_tagged", "tags": ["loop_detected"], "webhook_url": HOOK,
            "secret": SECRET})).json()
        url = f"/api/alerts/rules/{made['id']}"
        kept = await client.put(url, headers=_h(project["admin"]), json={
            "name": "any server down", "kind": "mcp_server_down", "webhook_url": HOOK})
        assert kept.status_code == 200, kept.text
        assert (kept.json()["kind"], kept.json()["tags"], kept.json()["has_secret"]) == ("mcp_server_down", None, True)
        removed = await client.put(url, headers=_h(project["member"]), json={
            "name": "any server down", "kind": "mcp_server_down", "webhook_url": HOOK, "secret": None})
        assert removed.json()["has_secret"] is False
        assert (await client.get(url, headers=_h(project["viewer"]))).json()["has_secret"] is False
        logged = (await client.get("/api/audit/logs", headers=_h(project["admin"]))).json()["items"]
        events = [e for e in logged if e["target"] == made["id"]]
        assert [e["action"] for e in events] == ["alert_rule.updated", "alert_rule.updated", "alert_rule.created"]
        assert [e["details"]["secret"] for e in events[:2]] == ["replaced", "kept"]
        assert SECRET not in str(logged)


async def test_viewers_and_other_projects_cannot_touch_rules(settings, store, project):
    body = {"name": "loops", "kind": "session_tagged", "tags": ["loop_detected"], "webhook_url": HOOK}
    async with client_for(settings, store) as client:
        refused = await client.post("/api/alerts/rules", headers=_h(project["viewer"]), json=body)
        assert refused.status_code == 403
        made = (await client.post("/api/alerts/rules", headers=_h(project["member"]), json=body)).json()
        url = f"/api/alerts/rules/{made['id']}"
        assert (await client.delete(url, headers=_h(project["viewer"]))).status_code == 403
        assert (await client.get(url, headers=_h(project["other"]))).status_code == 404
        assert (await client.put(url, headers=_h(project["other"]), json=body)).status_code == 404
        assert (await client.delete(url, headers=_h(project["other"]))).status_code == 404
        assert (await client.get("/api/alerts/rules", headers=_h(project["other"]))).json()["items"] == []
        # An SLO of another project cannot be watched.
        other_slo = await _slo(client, project["other"])
        answer = await client.post("/api/alerts/rules", headers=_h(project["member"]), json={
            "name": "x", "kind": "slo_breached", "slo_id": other_slo, "webhook_url": HOOK})
        assert answer.status_code == 422 and "no SLO" in answer.json()["detail"][0]["msg"]


@pytest.mark.parametrize("body, needle", [
    ({"kind": "session_tagged", "tags": ["bad_tag"]}, "loop_detected"),
    ({"kind": "session_tagged", "tags": []}, "at least 1 item"),
    ({"kind": "session_tagged", "tags": ["timeout"], "webhook_url": "ftp://example.com/x"}, "URL scheme"),
    ({"kind": "session_tagged", "tags": ["timeout"], "webhook_url": "not a url"}, "URL"),
    ({"kind": "mcp_server_down", "tags": ["timeout"]}, "Extra inputs"),
    ({"kind": "pager"}, "session_tagged"),
    ({"tags": ["timeout"]}, "kind"),
    ({"kind": "slo_breached"}, "slo_id"),
    ({"kind": "cost_budget_crossed", "budget_usd": 0, "window_hours": 24}, "greater than 0"),
    ({"kind": "cost_budget_crossed", "budget_usd": 5}, "window_hours"),
    ({"kind": "mcp_server_down", "cooldown_seconds": -1}, "greater than or equal to 0"),
    ({"kind": "mcp_server_down", "secret": "short"}, "at least 16 characters"),
])
async def test_bad_rules_are_422_with_the_reason(settings, store, project, body, needle):
    async with client_for(settings, store) as client:
        answer = await client.post("/api/alerts/rules", headers=_h(project["member"]),
                                   json={"name": "r", "webhook_url": HOOK, **body})
    assert answer.status_code == 422, answer.text
    assert needle in answer.text


async def test_text_with_nul_characters_is_refused(settings, store, project):
    async with client_for(settings, store) as client:
        answer = await client.post("/api/alerts/rules", headers=_h(project["member"]), json={
            "name": "a\x00b", "kind": "mcp_server_down", "webhook_url": HOOK})
        assert answer.status_code == 422 and "name may not contain NUL" in answer.text
        answer = await client.post("/api/slos", headers=_h(project["member"]), json={
            "name": "x", "kind": "cost_budget", "agent_name": "\x00", "target": 1, "window_hours": 1})
        assert answer.status_code == 422 and "agent_name may not contain NUL" in answer.text
