"""SLOs: CRUD with role checks and project isolation, and their status over seeded ClickHouse rows."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests.clickhouse_seed import NOW, new_project, seed_cost, seed_session, seed_spans, tool_call
from tests.test_api_sql import client_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def project(settings):
    project_id, keys = await new_project(settings.postgres_dsn, "slo", ("admin", "member", "viewer"))
    other_id, other = await new_project(settings.postgres_dsn, "slo-other", ("member",))
    return {"id": project_id, **keys, "other": other["member"], "other_id": other_id}


def _h(key):
    return {"X-API-Key": key}


async def test_members_define_slos_and_every_role_reads_them(settings, store, project):
    async with client_for(settings, store) as client:
        made = await client.post("/api/slos", headers=_h(project["member"]), json={
            "name": "checkout succeeds", "kind": "success_rate", "target": 99.5, "window_hours": 24})
        assert made.status_code == 201, made.text
        slo = made.json()
        assert (slo["kind"], slo["target"], slo["unit"], slo["agent_name"]) == ("success_rate", 99.5, "percent", None)

        refused = await client.post("/api/slos", headers=_h(project["viewer"]), json={
            "name": "x", "kind": "cost_budget", "target": 5, "window_hours": 24})
        assert refused.status_code == 403 and "member" in refused.json()["detail"]

        listed = await client.get("/api/slos", headers=_h(project["viewer"]))
        assert [s["id"] for s in listed.json()["items"]] == [slo["id"]]

        changed = await client.put(f"/api/slos/{slo['id']}", headers=_h(project["admin"]), json={
            "name": "planner is fast", "kind": "p99_latency", "agent_name": "planner", "target": 800, "window_hours": 1})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["kind"], changed.json()["unit"], changed.json()["agent_name"]) == ("p99_latency", "ms", "planner")
        assert (await client.get(f"/api/slos/{slo['id']}", headers=_h(project["viewer"]))).json()["target"] == 800

        # Another project's key finds nothing to read, change or delete.
        for method in ("get", "delete"):
            answer = await getattr(client, method)(f"/api/slos/{slo['id']}", headers=_h(project["other"]))
            assert answer.status_code == 404, answer.text
        answer = await client.put(f"/api/slos/{slo['id']}", headers=_h(project["other"]), json={
            "name": "x", "kind": "cost_budget", "target": 5, "window_hours": 24})
        assert answer.status_code == 404
        assert (await client.get("/api/slos", headers=_h(project["other"]))).json()["items"] == []

        assert (await client.delete(f"/api/slos/{slo['id']}", headers=_h(project["member"]))).status_code == 204
        assert (await client.get(f"/api/slos/{slo['id']}", headers=_h(project["member"]))).status_code == 404

        # Each write is in the project's audit log, with the key that made it.
        logged = (await client.get("/api/audit/logs", headers=_h(project["admin"]))).json()["items"]
        events = [(e["action"], e["actor"].split(":")[0]) for e in logged if e["target"] == slo["id"]]
        assert events == [("slo.deleted", "key"), ("slo.updated", "key"), ("slo.created", "key")]


async def test_slo_lists_page_with_a_cursor(settings, store, project):
    async with client_for(settings, store) as client:
        made = [(await client.post("/api/slos", headers=_h(project["member"]), json={
            "name": f"budget {i}", "kind": "cost_budget", "target": i + 1, "window_hours": 24})).json()["id"]
            for i in range(3)]
        first = (await client.get("/api/slos", params={"limit": 2}, headers=_h(project["viewer"]))).json()
        second = (await client.get("/api/slos", params={"limit": 2, "cursor": first["next_cursor"]},
                                   headers=_h(project["viewer"]))).json()
        assert [s["id"] for s in first["items"] + second["items"]] == made
        assert second["next_cursor"] is None
        bad = await client.get("/api/slos", params={"cursor": "not-a-cursor"}, headers=_h(project["viewer"]))
        assert bad.status_code == 400 and "cursor" in bad.json()["detail"]


@pytest.mark.parametrize("body, needle", [
    ({"name": "x", "kind": "success_rate", "target": 150, "window_hours": 24}, "at most 100"),
    ({"name": "x", "kind": "cost_budget", "target": 0, "window_hours": 24}, "greater than 0"),
    ({"name": "x", "kind": "cost_budget", "target": 5, "window_hours": 10000}, "less than or equal to 2160"),
    ({"name": "x", "kind": "uptime", "target": 5, "window_hours": 24}, "success_rate"),
    ({"name": "x", "kind": "cost_budget", "target": 5, "window_hours": 24, "server": "a"}, "Extra inputs"),
    ({"name": "", "kind": "cost_budget", "target": 5, "window_hours": 24}, "at least 1 character"),
])
async def test_bad_slo_definitions_are_422_with_the_reason(settings, store, project, body, needle):
    async with client_for(settings, store) as client:
        answer = await client.post("/api/slos", headers=_h(project["member"]), json=body)
    assert answer.status_code == 422, answer.text
    assert needle in answer.text


async def test_unknown_slo_ids_are_4xx(settings, store, project):
    async with client_for(settings, store) as client:
        assert (await client.get("/api/slos/not-a-uuid", headers=_h(project["viewer"]))).status_code == 422
        missing = await client.get(f"/api/slos/{uuid.uuid4()}", headers=_h(project["viewer"]))
        assert missing.status_code == 404 and "no SLO" in missing.json()["detail"]


async def _define(client, key, **body):
    answer = await client.post("/api/slos", headers=_h(key), json={"name": body.get("kind"), "window_hours": 24, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def test_status_judges_each_slo_from_the_views(settings, store, project):
    pid = project["id"]
    stale = NOW - timedelta(hours=2)  # older than SPANSTREAM_INCOMPLETE_AFTER_SECONDS (30 min)
    sessions = [
        ("closed", "success", NOW, ["planner"]),
        ("closed", "success", NOW - timedelta(hours=1), ["planner"]),
        ("closed", "success_with_fallback", NOW, ["planner", "writer"]),
        ("closed", "tool_failure", NOW, ["writer"]),
        ("open", "success", stale, ["planner"]),    # settled as incomplete: a failure
        ("open", "tool_failure", NOW, ["planner"]),  # still running: not judged yet
        ("closed", "loop_detected", NOW - timedelta(hours=30), ["planner"]),  # outside the window
    ]
    for i, (state, tag, last_at, agents) in enumerate(sessions):
        seed_session(store, pid, f"s{i}", last_at, status=state, health_tag=tag, agents=agents)
    seed_spans(store, [tool_call(pid, "s0", NOW - timedelta(minutes=1), float(ms), agent_name="planner")
                       for ms in range(1, 101)])
    seed_spans(store, [tool_call(pid, "s3", NOW - timedelta(minutes=1), 40.0, agent_name="writer") for _ in range(5)])
    planner_cost, writer_cost = 1_250_000_000, 500_000_000  # nano-USD
    seed_cost(store, pid, "s0", NOW, planner_cost, agent_name="planner")
    seed_cost(store, pid, "s3", NOW, writer_cost, agent_name="writer")
    seed_cost(store, pid, "s6", NOW - timedelta(hours=30), 9_000_000_000, agent_name="planner")

    # Another project's failures, slow calls and spending count for nothing here.
    other = project["other_id"]
    seed_session(store, other, "s0", NOW, health_tag="tool_failure", agents=["planner", "writer"])
    seed_spans(store, [tool_call(other, "s0", NOW, 9000.0, agent_name="writer")])
    seed_cost(store, other, "s0", NOW, 50_000_000_000, agent_name="planner")

    async with client_for(settings, store) as client:
        member = project["member"]
        ids = {
            "rate_ok": await _define(client, member, kind="success_rate", target=60),
            "rate_breached": await _define(client, member, kind="success_rate", target=90),
            "rate_writer": await _define(client, member, kind="success_rate", target=60, agent_name="writer"),
            "p99_breached": await _define(client, member, kind="p99_latency", target=50),
            "p99_writer": await _define(client, member, kind="p99_latency", target=50, agent_name="writer"),
            "cost_breached": await _define(client, member, kind="cost_budget", target=1.5),
            "cost_planner": await _define(client, member, kind="cost_budget", target=1.5, agent_name="planner"),
            "none_rate": await _define(client, member, kind="success_rate", target=60, agent_name="nobody"),
            "none_p99": await _define(client, member, kind="p99_latency", target=60, agent_name="nobody"),
            "none_cost": await _define(client, member, kind="cost_budget", target=60, agent_name="nobody"),
        }
        answer = await client.get("/api/slos/status", headers=_h(project["viewer"]))
        assert answer.status_code == 200, answer.text
        status = {item["slo"]["id"]: item for item in answer.json()["items"]}
    by = {name: status[slo_id] for name, slo_id in ids.items()}

    # Settled sessions in the window: the closed ones, plus the stale open one.
    settled = sessions[:5]
    good = [s for s in settled if s[0] == "closed" and s[1] in ("success", "success_with_fallback")]
    assert by["rate_ok"]["sample"] == len(settled)
    assert by["rate_ok"]["value"] == pytest.approx(100 * len(good) / len(settled))
    assert (by["rate_ok"]["state"], by["rate_breached"]["state"]) == ("ok", "breached")
    writer = [s for s in settled if "writer" in s[3]]
    assert by["rate_writer"]["value"] == pytest.approx(100 * sum(s[1] != "tool_failure" for s in writer) / len(writer))
    assert by["rate_writer"]["state"] == "breached"  # one of the writer's two sessions failed: 50% < 60%

    # p99 of 1..100 ms (a t-digest estimate) and of the writer's five 40 ms calls.
    assert 95 <= by["p99_breached"]["value"] <= 100 and by["p99_breached"]["state"] == "breached"
    assert by["p99_breached"]["sample"] == 105
    assert by["p99_writer"]["value"] == pytest.approx(40) and by["p99_writer"]["state"] == "ok"

    # The 30-hour-old cost is outside the 24-hour window.
    assert by["cost_breached"]["value"] == pytest.approx((planner_cost + writer_cost) / 1e9) and by["cost_breached"]["state"] == "breached"
    assert by["cost_planner"]["value"] == pytest.approx(planner_cost / 1e9) and by["cost_planner"]["state"] == "ok"
    assert by["cost_planner"]["unit"] == "usd" and by["cost_planner"]["target"] == 1.5

    for name in ("none_rate", "none_p99", "none_cost"):
        assert (by[name]["state"], by[name]["value"], by[name]["sample"]) == ("no_data", None, 0)


async def test_non_finite_numbers_are_422_not_500(settings, store, project):
    """Python's JSON parser reads NaN and Infinity; the error answer must still be JSON."""
    async with client_for(settings, store) as client:
        for text in ('{"name": Infinity}', '{"name": "x", "kind": "cost_budget", "target": NaN, "window_hours": 1}'):
            answer = await client.post("/api/slos", content=text, headers={**_h(project["member"]),
                                                                           "Content-Type": "application/json"})
            assert answer.status_code == 422, answer.text
            assert answer.json()["detail"]
