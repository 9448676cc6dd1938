"""The query endpoints over the materialized views, through the app with its lifespan, on real chdb and PostgreSQL.

Sessions are folded and written the way the worker writes them (loadtests/query_seed.py); every
expected answer is worked out here from the generated spans and the folded records.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.reader import CappedReader, QueryCapped
from api.repositories.projects import create_api_key, ensure_project
from loadtests.generate import generate_session
from loadtests.query_seed import write_sessions
from schemas.span import Span
from streams.pricing_source import load_price_book
from tests.clickhouse_seed import seed_session

pytestmark = pytest.mark.anyio
NOW = datetime.now(UTC).replace(microsecond=0)
SESSIONS = 40


async def _project(dsn: str) -> tuple[str, str]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        project = await ensure_project(pool, f"query-{uuid.uuid4().hex[:8]}")
        return str(project.id), await create_api_key(pool, project.id, "test", role="viewer")
    finally:
        await pool.close()


def _tree_session(project_id: str) -> list[Span]:
    """A root, an LLM call and a tool call under it, a grandchild that started before its parent
    was written down, and an orphan whose parent never arrived."""
    t0 = NOW - timedelta(minutes=10)

    def span(span_id: str, parent: str | None, seconds: float, **fields) -> Span:
        return Span(project_id=project_id, session_id="tree-1", span_id=span_id, parent_span_id=parent,
                    started_at=t0 + timedelta(seconds=seconds), ended_at=t0 + timedelta(seconds=seconds + 1),
                    agent_name="planner", **fields)

    return [
        span("g-child", "tool", 2.5, span_type="tool_call", server_name="docs-mcp", tool_name="search"),
        span("root", None, 0, span_type="agent"),
        span("llm", "root", 1, span_type="llm", model_id="claude-sonnet-4-5", input_tokens=1000,
             cache_read_tokens=600, output_tokens=200),
        span("tool", "root", 2, span_type="tool_call", server_name="docs-mcp", tool_name="search", status="error"),
        span("lost", "never-arrived", 3, span_type="llm", model_id="gpt-4o", input_tokens=50, output_tokens=5),
    ]


@pytest.fixture(scope="module")
def seeded(settings, store):
    project_id, key = asyncio.run(_project(settings.postgres_dsn))
    _, other_key = asyncio.run(_project(settings.postgres_dsn))
    book = asyncio.run(load_price_book(settings.postgres_dsn, settings.unknown_model_usd_per_call))
    # One session every 45 minutes back from now: 30 hours, so a 24-hour window holds some.
    sessions = [generate_session(11, i, 2 + i % 7, project_id, NOW - timedelta(minutes=45 * i) - timedelta(seconds=i))
                for i in range(SESSIONS)]
    sessions.append(_tree_session(project_id))
    records = write_sessions(store, sessions, book)
    return {"project": project_id, "key": key, "other_key": other_key, "sessions": sessions,
            "records": {record["session_id"]: record for record in records}}


@pytest.fixture
async def api(settings, store, seeded):
    app = create_app(settings, store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream",
                                     headers={"X-API-Key": seeded["key"]}) as client:
            yield client


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _in_window(records: dict, hours: float) -> dict:
    start = NOW - timedelta(hours=hours)
    return {sid: r for sid, r in records.items() if _at(r["last_at"]) >= start and _at(r["first_at"]) <= datetime.now(UTC)}


SORT_FIELDS = {"last_at": lambda r: _at(r["last_at"]), "first_at": lambda r: _at(r["first_at"]),
               "cost": lambda r: r["cost_nano_usd"], "duration": lambda r: r["duration_ms"],
               "spans": lambda r: r["spans"], "errors": lambda r: r["errors"]}


async def _walk(api, **params) -> list[str]:
    seen, cursor = [], None
    for _ in range(100):
        response = await api.get("/api/agents/sessions", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= params.get("limit", 100)
        seen += [item["session_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ran out")


async def test_the_default_list_is_the_last_24_hours_newest_first(api, seeded):
    expected = _in_window(seeded["records"], 24)
    assert 0 < len(expected) < len(seeded["records"])
    response = await api.get("/api/agents/sessions")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["session_id"] for item in items] == sorted(
        expected, key=lambda sid: (_at(expected[sid]["last_at"]), sid), reverse=True)
    first = items[0]
    record = expected[first["session_id"]]
    for name in ("spans", "llm_calls", "tool_calls", "errors", "agents", "servers", "models", "cost_nano_usd",
                 "input_tokens", "health_tag", "status", "version"):
        assert first[name] == record[name], name
    assert first["cost_usd"] == record["cost_nano_usd"] / 1e9
    # A list item is the session's figures only: no cost cells, no spans.
    assert "costs" not in first and "trace" not in first


@pytest.mark.parametrize("sort", list(SORT_FIELDS))
@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_walking_every_page_shows_each_session_once_in_order(api, seeded, sort, order):
    expected = _in_window(seeded["records"], 48)
    walked = await _walk(api, hours=48, sort=sort, order=order, limit=7)
    assert walked == sorted(expected, key=lambda sid: (SORT_FIELDS[sort](expected[sid]), sid), reverse=order == "desc")
    assert len(walked) == len(set(walked)) == len(expected)


async def test_filters_pick_the_sessions_that_match(api, seeded):
    records = _in_window(seeded["records"], 48)
    costs = sorted(r["cost_nano_usd"] for r in records.values())
    low, high = costs[len(costs) // 4], costs[3 * len(costs) // 4]
    tags = Counter(r["health_tag"] for r in records.values())
    cases = [
        ({"agent": "coding-agent"}, lambda r: "coding-agent" in r["agents"]),
        ({"server": "docs-mcp"}, lambda r: "docs-mcp" in r["servers"]),
        ({"model": "gpt-4o"}, lambda r: "gpt-4o" in r["models"]),
        ({"status": "closed"}, lambda r: r["status"] == "closed"),
        ({"health_tag": tags.most_common(1)[0][0]}, lambda r: r["health_tag"] == tags.most_common(1)[0][0]),
        ({"min_cost_usd": low / 1e9, "max_cost_usd": high / 1e9}, lambda r: low <= r["cost_nano_usd"] <= high),
        ({"agent": "support-agent", "server": "crm-mcp"},
         lambda r: "support-agent" in r["agents"] and "crm-mcp" in r["servers"]),
    ]
    for params, keep in cases:
        wanted = {sid for sid, r in records.items() if keep(r)}
        assert wanted, params  # every case selects something, and not everything
        assert wanted != set(records) or params == {"status": "closed"}, params
        assert set(await _walk(api, hours=48, limit=5, **params)) == wanted, params


async def test_an_explicit_window_bounds_the_list(api, seeded):
    start, end = NOW - timedelta(hours=10), NOW - timedelta(hours=4)
    wanted = {sid for sid, r in seeded["records"].items() if _at(r["last_at"]) >= start and _at(r["first_at"]) <= end}
    assert wanted
    got = await _walk(api, **{"from": start.isoformat(), "to": end.isoformat()})
    assert set(got) == wanted


@pytest.mark.parametrize("params, message", [
    ({"cursor": "not-a-cursor"}, "malformed cursor"),
    ({"hours": 2, "from": NOW.isoformat()}, "not both"),
    ({"from": NOW.isoformat(), "to": (NOW - timedelta(hours=1)).isoformat()}, "before"),
    ({"from": "2025-01-01T00:00:00"}, "time zone"),
    ({"min_cost_usd": 2, "max_cost_usd": 1}, "min_cost_usd"),
    ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "between 1970"),
])
async def test_bad_list_parameters_are_refused_with_a_reason(api, params, message):
    response = await api.get("/api/agents/sessions", params=params)
    assert response.status_code == 400 and message in response.json()["detail"]


async def test_a_cursor_only_works_with_the_sort_it_was_made_for(api):
    page = (await api.get("/api/agents/sessions", params={"hours": 48, "limit": 2, "sort": "cost"})).json()
    assert page["next_cursor"]
    response = await api.get("/api/agents/sessions", params={"hours": 48, "cursor": page["next_cursor"]})
    assert response.status_code == 400


async def test_a_trace_is_a_tree_with_orphans_and_costs_per_span(api, seeded):
    response = await api.get("/api/agents/sessions/tree-1")
    assert response.status_code == 200, response.text
    found = response.json()
    nodes = {node["span_id"]: node for node in found["trace"]}
    assert [node["span_id"] for node in found["trace"]] == ["root", "llm", "tool", "g-child", "lost"]
    assert found["roots"] == ["root", "lost"]
    assert nodes["root"]["children"] == ["llm", "tool"] and nodes["tool"]["children"] == ["g-child"]
    assert [nodes[s]["depth"] for s in ("root", "llm", "tool", "g-child", "lost")] == [0, 1, 1, 2, 0]
    assert nodes["lost"]["orphan"] and not nodes["g-child"]["orphan"]
    assert nodes["tool"]["offset_ms"] == 2000 and nodes["tool"]["latency_ms"] == 1000
    # Sonnet 4.5: $3 input, $0.30 cache read, $15 output per million tokens.
    assert nodes["llm"]["cost_nano_usd"] == (400 * 3 + 600 * 0.3 + 200 * 15) * 1000
    assert sum(node["cost_nano_usd"] for node in found["trace"]) == found["cost_nano_usd"] > 0
    assert found["spans"] == 5 and found["next_cursor"] is None
    assert sum(cell["cost_nano_usd"] for cell in found["costs"]) == found["cost_nano_usd"]


async def test_a_large_trace_pages_by_start_time(api, seeded):
    session = max(seeded["sessions"][:SESSIONS], key=len)
    session_id = session[0].session_id
    walked, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.get(f"/api/agents/sessions/{session_id}", params=params)).json()
        assert len(page["trace"]) <= 3
        walked += [node["span_id"] for node in page["trace"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == [s.span_id for s in sorted(session, key=lambda s: (s.started_at, s.span_id))]
    record = seeded["records"][session_id]
    assert len(walked) == record["spans"] > 3
    bad = await api.get(f"/api/agents/sessions/{session_id}", params={"cursor": "xyz"})
    assert bad.status_code == 400


async def test_cost_breakdown_groups_and_totals(api, seeded):
    cells = [(record["session_id"], cell) for record in seeded["records"].values() for cell in record["costs"]]
    total = sum(cell["cost_nano_usd"] for _, cell in cells)
    for group_by, field in (("model", "model_id"), ("agent", "agent_name"), ("server", "server_name"), ("session", None)):
        expected = defaultdict(int)
        for session_id, cell in cells:
            expected[session_id if field is None else cell[field]] += cell["cost_nano_usd"]
        response = await api.get("/api/costs/breakdown", params={"group_by": group_by, "hours": 72})
        assert response.status_code == 200, response.text
        body = response.json()
        assert {item["key"]: item["cost_nano_usd"] for item in body["items"]} == dict(expected)
        assert [item["cost_nano_usd"] for item in body["items"]] == sorted(expected.values(), reverse=True)
        assert body["totals"]["cost_nano_usd"] == total and body["totals"]["groups"] == len(expected)
        assert body["totals"]["sessions"] == len(seeded["records"])
    top = (await api.get("/api/costs/breakdown", params={"group_by": "session", "hours": 72, "limit": 3})).json()
    assert len(top["items"]) == 3 and top["totals"]["cost_nano_usd"] == total


async def test_server_health_counts_calls_errors_and_the_last_status(api, seeded):
    calls = [span for spans in seeded["sessions"] for span in spans if span.span_type == "tool_call" and span.server_name]
    by_server = defaultdict(list)
    for span in calls:
        by_server[span.server_name].append(span)
    body = (await api.get("/api/health/servers", params={"hours": 72})).json()
    listed = {item["server_name"]: item for item in body["items"]}
    assert set(listed) == set(by_server)
    for name, spans in by_server.items():
        failed = sum(span.status in ("error", "timeout") for span in spans)
        latest = max(spans, key=lambda span: span.started_at)
        assert listed[name]["calls"] == len(spans) and listed[name]["failures"] == failed
        assert listed[name]["error_rate"] == pytest.approx(failed / len(spans))
        assert listed[name]["last_status"] == latest.status
        assert _at(listed[name]["last_call_at"]) == latest.started_at
        assert listed[name]["p50_ms"] <= listed[name]["p95_ms"] <= listed[name]["p99_ms"]
    name = max(by_server, key=lambda server: len(by_server[server]))
    detail = (await api.get(f"/api/health/servers/{name}", params={"hours": 72})).json()
    tools = Counter(span.tool_name for span in by_server[name])
    assert {row["tool_name"]: row["calls"] for row in detail["tools"]} == dict(tools)
    hours = Counter(span.started_at.replace(minute=0, second=0, microsecond=0) for span in by_server[name])
    assert {_at(row["hour"]): row["calls"] for row in detail["hours"]} == dict(hours)
    assert detail["calls"] == len(by_server[name])
    assert (await api.get("/api/health/servers/no-such-mcp")).status_code == 404


async def test_agents_are_listed_with_their_totals(api, seeded):
    records = seeded["records"].values()
    sessions, spans, cost, last = Counter(), Counter(), Counter(), {}
    for record in records:
        for cell in record["costs"]:
            spans[cell["agent_name"]] += cell["calls"]
            cost[cell["agent_name"]] += cell["cost_nano_usd"]
        for agent in record["agents"]:
            sessions[agent] += 1
            last[agent] = max(last.get(agent, _at(record["last_at"])), _at(record["last_at"]))
    body = (await api.get("/api/agents", params={"hours": 72})).json()
    got = {item["agent_name"]: item for item in body["items"]}
    assert set(got) == set(sessions)
    for agent, item in got.items():
        assert (item["sessions"], item["spans"], item["cost_nano_usd"]) == (sessions[agent], spans[agent], cost[agent])
        assert _at(item["last_at"]) == last[agent]
    assert [item["agent_name"] for item in body["items"]] == sorted(last, key=lambda a: last[a], reverse=True)


async def test_another_projects_key_sees_none_of_it(api, seeded):
    other = {"X-API-Key": seeded["other_key"]}
    assert (await api.get("/api/agents/sessions", params={"hours": 72}, headers=other)).json()["items"] == []
    assert (await api.get("/api/agents/sessions/tree-1", headers=other)).status_code == 404
    costs = (await api.get("/api/costs/breakdown", params={"hours": 72}, headers=other)).json()
    assert costs["items"] == [] and costs["totals"]["cost_nano_usd"] == 0
    assert (await api.get("/api/health/servers", params={"hours": 72}, headers=other)).json()["items"] == []
    assert (await api.get("/api/health/servers/docs-mcp", params={"hours": 72}, headers=other)).status_code == 404
    assert (await api.get("/api/agents", params={"hours": 72}, headers=other)).json()["items"] == []
    assert (await api.get("/api/agents/sessions")).status_code == 200  # the owner still sees it


async def test_a_query_over_its_cap_is_stopped_with_a_clear_answer(store):
    with pytest.raises(QueryCapped) as timed_out:
        await CappedReader(store, 0.05, 1024**3).rows("SELECT count(DISTINCT number) FROM numbers(2000000000)")
    assert timed_out.value.status_code == 504 and "narrow the time window" in timed_out.value.message
    with pytest.raises(QueryCapped) as too_big:
        await CappedReader(store, 60, 16 * 1024**2).rows("SELECT count(DISTINCT number) FROM numbers(50000000)")
    assert too_big.value.status_code == 503 and "MiB" in too_big.value.message


async def test_an_endpoint_whose_query_hits_the_time_cap_answers_504(settings, store, seeded):
    capped = settings.model_copy(update={"query_max_execution_seconds": 0.000001})
    app = create_app(capped, store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream",
                                     headers={"X-API-Key": seeded["key"]}) as client:
            for path in ("/api/agents/sessions", "/api/agents/sessions/tree-1", "/api/costs/breakdown", "/api/agents"):
                response = await client.get(path, params={"hours": 720} if path != "/api/agents/sessions/tree-1" else {})
                assert response.status_code == 504, (path, response.text)
                assert "narrow the time window" in response.json()["detail"]


async def test_a_trace_shows_exactly_what_the_columns_hold(api, seeded, store):
    """The trace reads each row packed in one column (migrations/clickhouse/0011); every field it
    shows must equal the table's own column, for the session, its cost cells and its spans."""
    session_id = max(seeded["sessions"][:SESSIONS], key=len)[0].session_id
    found = (await api.get(f"/api/agents/sessions/{session_id}")).json()
    key = {"project_id": seeded["project"], "session_id": session_id}
    where = "WHERE project_id = {project_id:String} AND session_id = {session_id:String}"
    spans = store.query_sync(f"SELECT * FROM spans FINAL {where} ORDER BY started_at, span_id", key)
    assert len(found["trace"]) == len(spans) > 3
    for shown, stored in zip(found["trace"], spans, strict=True):
        for name, value in shown.items():
            if name in stored:
                expected = stored[name]
                if isinstance(expected, datetime):
                    expected = expected.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
                assert value == expected, (name, value, expected)
    session = store.query_sync(f"SELECT * FROM sessions FINAL {where}", key)[0]
    for name in ("version", "duration_ms", "spans", "llm_calls", "tool_calls", "failed_calls", "errors",
                 "agents", "servers", "models", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_creation_tokens", "thinking_tokens", "cost_nano_usd", "unpriced_calls", "status"):
        assert found[name] == session[name], name
    assert _at(found["first_at"]) == session["first_at"].replace(tzinfo=UTC)
    listed = next(item for item in (await api.get("/api/agents/sessions", params={"hours": 48, "limit": 1000})).json()["items"]
                  if item["session_id"] == session_id)
    assert listed == {name: value for name, value in found.items() if name in listed}
    cells = store.query_sync(f"SELECT * FROM session_costs FINAL {where} ORDER BY hour, model_id, agent_name, server_name", key)
    assert [{**cell, "hour": _at(cell["hour"])} for cell in found["costs"]] == [
        {name: cell[name].replace(tzinfo=UTC) if name == "hour" else cell[name] for name in found["costs"][0]}
        for cell in cells]


async def test_a_session_larger_than_a_page_is_read_page_by_page_in_order(settings, store):
    """Up to SPANSTREAM_TRACE_PAGE_MAX_SPANS a session is read whole; past it the first page comes
    from ClickHouse in start order and the tree's shape from every span's parent."""
    project_id, key = await _project(settings.postgres_dsn)  # its own: the other tests count seeded's sessions
    book = await load_price_book(settings.postgres_dsn, settings.unknown_model_usd_per_call)
    t0 = NOW - timedelta(minutes=5)
    root = Span(project_id=project_id, session_id="wide-1", span_id="root", span_type="agent",
                started_at=t0, ended_at=t0 + timedelta(seconds=60), agent_name="planner")
    calls = [Span(project_id=project_id, session_id="wide-1", span_id=f"call-{i:02d}", parent_span_id="root",
                  span_type="tool_call", server_name="docs-mcp", tool_name="search", agent_name="planner",
                  started_at=t0 + timedelta(seconds=30 - i), ended_at=t0 + timedelta(seconds=31 - i))
             for i in range(24)]
    write_sessions(store, [[*calls, root]], book)
    app = create_app(settings.model_copy(update={"trace_page_max_spans": 10}), store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream",
                                     headers={"X-API-Key": key}) as client:
            walked, cursor = [], None
            while True:
                page = (await client.get("/api/agents/sessions/wide-1",
                                         params={"cursor": cursor} if cursor else {})).json()
                assert len(page["trace"]) <= 10
                if not walked:
                    assert page["trace"][0]["span_id"] == "root"
                    assert len(page["trace"][0]["children"]) == 24  # the whole tree, not this page's
                walked += [node["span_id"] for node in page["trace"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
    assert walked == ["root"] + [f"call-{i:02d}" for i in reversed(range(24))]


async def test_a_span_holding_bytes_that_are_not_utf8_still_shows_in_its_trace(settings, store):
    """ClickHouse strings are bytes: a row written by another tool may hold bytes that are not
    UTF-8. The trace shows them as U+FFFD instead of failing the whole session."""
    project_id, key = await _project(settings.postgres_dsn)
    seed_session(store, project_id, "bytes-1", NOW, spans=1)
    store.command_sync(
        """INSERT INTO spans (project_id, session_id, span_id, span_type, name, error, started_at, ended_at)
           SELECT {p:String}, 'bytes-1', 'raw', 'tool_call', unhex('ff41'), unhex('c328'), now64(6), now64(6)""",
        {"p": project_id})
    app = create_app(settings, store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream",
                                     headers={"X-API-Key": key}) as client:
            response = await client.get("/api/agents/sessions/bytes-1")
    assert response.status_code == 200, response.text
    span = response.json()["trace"][0]
    assert span["name"] == "\ufffdA" and span["error"].startswith("\ufffd")
