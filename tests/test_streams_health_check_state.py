"""The health-check fold on plain values: drift, status changes, duplicates and late checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.health_check import judge, tool_fingerprints, tools_hash
from streams.health_check_state import observe

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def check(n: int, status: str = "up", tools: list[dict] | None = None) -> dict:
    listed = status != "down"
    tools = tools if tools is not None else [{"name": "search", "inputSchema": {"type": "object"}}]
    return {"check_id": f"c{n}", "project_id": "p", "server_name": "docs", "status": status,
            "checked_at": (T0 + timedelta(minutes=n)).isoformat(),
            "tools_hash": tools_hash(tools) if listed else None, "tools": tool_fingerprints(tools) if listed else [],
            "error": None if listed else "no answer"}


def run(checks: list[dict]) -> list[dict]:
    state, events = None, []
    for item in checks:
        state, emitted = observe(state, item)
        events.extend(emitted)
    return events


def test_the_hash_ignores_listing_order_and_key_order():
    a = [{"name": "b", "description": "x", "inputSchema": {"type": "object", "properties": {"q": {}}}},
         {"name": "a", "inputSchema": {}}]
    b = [{"inputSchema": {}, "name": "a"}, {"inputSchema": {"properties": {"q": {}}, "type": "object"}, "description": "x", "name": "b"}]
    assert tools_hash(a) == tools_hash(b)
    assert tools_hash(a) != tools_hash([a[1], {**a[0], "description": "y"}])


def test_drift_names_the_tools_added_removed_and_changed():
    before = [{"name": "search", "inputSchema": {"type": "object"}}, {"name": "fetch", "inputSchema": {}}]
    after = [{"name": "search", "inputSchema": {"type": "object", "required": ["q"]}}, {"name": "write", "inputSchema": {}}]
    [drift] = run([check(0, tools=before), check(1, tools=before), check(2, tools=after)])
    assert drift["kind"] == "schema_drift" and drift["check_id"] == "c2" and drift["previous_check_id"] == "c1"
    assert (drift["tools_added"], drift["tools_removed"], drift["tools_changed"]) == (["write"], ["fetch"], ["search"])
    assert drift["old_hash"] == tools_hash(before) and drift["new_hash"] == tools_hash(after)


def test_down_then_recovered_and_drift_across_the_outage():
    other = [{"name": "other", "inputSchema": {}}]
    events = run([check(0), check(1, "down"), check(2, "down"), check(3, tools=other)])
    assert [(e["kind"], e["check_id"]) for e in events] == [("down", "c1"), ("schema_drift", "c3"), ("recovered", "c3")]


def test_a_first_check_that_is_down_is_an_event_and_a_first_up_is_not():
    assert [e["kind"] for e in run([check(0, "down")])] == ["down"]
    assert run([check(0)]) == []
    assert [e["kind"] for e in run([check(0), check(1, "degraded"), check(2)])] == ["degraded", "recovered"]


def test_the_last_check_again_gives_the_same_events_and_an_older_one_none():
    checks = [check(0), check(1, "down")]
    state, _ = observe(None, checks[0])
    state, first = observe(state, checks[1])
    again_state, again = observe(state, checks[1])
    assert again == first and again_state == state
    late_state, late = observe(state, check(0, "degraded") | {"check_id": "late"})
    assert late == [] and late_state == state


def test_status_since_and_last_up_are_kept_across_checks():
    state = None
    for item in [check(0), check(1), check(2, "down"), check(3, "down")]:
        state, _ = observe(state, item)
    assert state["last"]["status_since"] == check(2)["checked_at"]
    assert state["last"]["last_up_at"] == check(1)["checked_at"]


def test_the_status_rule():
    assert judge(initialized=True, listed=True, latency_ms=150, degraded_after_ms=2000) == "up"
    assert judge(initialized=True, listed=True, latency_ms=2500, degraded_after_ms=2000) == "degraded"
    assert judge(initialized=True, listed=False, latency_ms=15, degraded_after_ms=2000) == "degraded"
    assert judge(initialized=False, listed=False, latency_ms=None, degraded_after_ms=2000) == "down"
