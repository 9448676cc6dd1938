"""The example queries in docs/analytics.md, run through POST /api/sql over seeded rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from spanstream.settings import REPO_ROOT
from tests.clickhouse_seed import NOW, new_project, seed_cost, seed_session, seed_spans, tool_call
from tests.test_api_sql import client_for

pytestmark = pytest.mark.anyio


def _examples() -> dict[str, str]:
    """Heading -> SQL of each example under "## Example queries"."""
    text = (REPO_ROOT / "docs" / "analytics.md").read_text().split("## Example queries", 1)[1]
    return dict(re.findall(r"^### (.+?)\n+```sql\n(.*?)```", text, flags=re.MULTILINE | re.DOTALL))


EXAMPLES = _examples()


def test_the_documented_examples_are_the_ones_tested():
    assert set(EXAMPLES) == {"Cost per agent per day", "Slowest MCP tools", "Sessions by health tag",
                             "Latest health tag per session without FINAL"}


@pytest.fixture(scope="module")
async def seeded(settings, store):
    project_id, keys = await new_project(settings.postgres_dsn, "docs")
    yesterday = NOW - timedelta(days=1)
    costs = [("s1", NOW, "planner", 1_000_000_000), ("s2", NOW, "planner", 500_000_000),
             ("s2", NOW, "writer", 250_000_000), ("s0", yesterday, "planner", 125_000_000)]
    for session, hour, agent, nano in costs:
        seed_cost(store, project_id, session, hour, nano, agent_name=agent)
    seed_spans(store, [tool_call(project_id, "s1", NOW - timedelta(minutes=5), float(ms)) for ms in range(10, 21)])
    seed_spans(store, [tool_call(project_id, "s2", NOW - timedelta(minutes=5), 500.0, server_name="jira-mcp",
                                 tool_name="get_issue", status="error")])
    sessions = [("s0", NOW, "closed", "success", 1), ("s1", NOW, "closed", "success", 3),
                ("s2", NOW, "closed", "tool_failure", 2), ("s3", NOW - timedelta(hours=2), "open", "success", 1)]
    for session, last_at, state, tag, version in sessions:
        seed_session(store, project_id, session, last_at, status=state, health_tag=tag, version=version)
    seed_session(store, project_id, "s1", NOW, health_tag="tool_failure", version=2)  # an older version of s1
    return {"key": keys["admin"], "costs": costs, "sessions": sessions}


async def _run(settings, store, key, name):
    async with client_for(settings, store) as client:
        answer = await client.post("/api/sql", json={"sql": EXAMPLES[name]}, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [dict(zip([c["name"] for c in body["columns"]], row)) for row in body["rows"]]


async def test_cost_per_agent_per_day(settings, store, seeded):
    rows = await _run(settings, store, seeded["key"], "Cost per agent per day")
    expected: dict[tuple[str, str], int] = {}
    for _, hour, agent, nano in seeded["costs"]:
        expected[(hour.date().isoformat(), agent)] = expected.get((hour.date().isoformat(), agent), 0) + nano
    assert {(r["day"], r["agent_name"]): r["cost_usd"] for r in rows} == {k: v / 1e9 for k, v in expected.items()}
    assert rows[0]["day"] == NOW.date().isoformat() and rows[0]["agent_name"] == "planner"  # newest day, dearest first


async def test_slowest_mcp_tools(settings, store, seeded):
    rows = await _run(settings, store, seeded["key"], "Slowest MCP tools")
    assert [(r["server_name"], r["tool_name"], r["calls"], r["failures"]) for r in rows] == [
        ("jira-mcp", "get_issue", 1, 1), ("docs-mcp", "search", 11, 0)]
    assert rows[0]["p99_ms"] == 500 and 10 <= rows[1]["p50_ms"] <= 20


async def test_sessions_by_health_tag(settings, store, seeded):
    rows = await _run(settings, store, seeded["key"], "Sessions by health tag")
    # FINAL keeps each session's latest version; the open session idle for two hours is incomplete.
    assert {r["tag"]: r["sessions"] for r in rows} == {"success": 2, "tool_failure": 1, "incomplete": 1}


async def test_latest_health_tag_without_final(settings, store, seeded):
    rows = await _run(settings, store, seeded["key"], "Latest health tag per session without FINAL")
    assert [(r["session_id"], r["latest_tag"], r["latest_version"]) for r in rows] == [
        (session, tag, version) for session, _, _, tag, version in seeded["sessions"]]
