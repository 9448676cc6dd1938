"""POST /api/sql: one read-only, capped query that sees the caller's project only, on real chdb."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest

from api.app import create_app
from tests.clickhouse_seed import NOW, new_project, seed_cost, seed_session, seed_spans, tool_call

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def client_for(settings, store, operator_token=None, **overrides):
    """The app over this session's chdb store, its lifespan running; `overrides` change settings."""
    app = create_app(settings.model_copy(update=overrides), store, operator_token=operator_token)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://spanstream") as client:
            yield client


@pytest.fixture(scope="module")
async def projects(settings, store):
    """Project A (admin, member and viewer keys) and project B, each with spans, a session and costs."""
    a, keys = await new_project(settings.postgres_dsn, "sql-a", ("admin", "member", "viewer"))
    b, b_keys = await new_project(settings.postgres_dsn, "sql-b")
    for project, calls in ((a, 3), (b, 5)):
        session = f"s-{uuid.uuid4().hex[:6]}"
        seed_spans(store, [tool_call(project, session, NOW - timedelta(minutes=i), 100.0 * (i + 1)) for i in range(calls)])
        seed_session(store, project, session, NOW, spans=calls)
        seed_cost(store, project, session, NOW, 1_000 * calls)
    return {"a": a, "b": b, "keys": keys, "b_key": b_keys["admin"]}


async def sql(client, key, text):
    return await client.post("/api/sql", json={"sql": text}, headers={"X-API-Key": key})


async def test_an_admin_sees_only_its_own_projects_rows(settings, store, projects):
    admin = projects["keys"]["admin"]
    async with client_for(settings, store) as client:
        answer = await sql(client, admin, "SELECT count() AS n, uniqExact(project_id) AS projects FROM spans FINAL")
        assert answer.status_code == 200, answer.text
        assert answer.json()["columns"] == [{"name": "n", "type": "UInt64"}, {"name": "projects", "type": "UInt64"}]
        assert answer.json()["rows"] == [[3, 1]]
        # Naming the other project, qualifying the table, or reaching it through a join, a
        # subquery, IN, a CTE or the aggregated stats changes nothing.
        for query in (
            f"SELECT count() FROM spans WHERE project_id = '{projects['b']}'",
            f"SELECT count() FROM spanstream.sessions FINAL WHERE project_id = '{projects['b']}'",
            f"SELECT count() FROM session_costs FINAL WHERE project_id != '{projects['a']}'",
            f"SELECT count() FROM sessions s JOIN spans p ON p.session_id = s.session_id WHERE p.project_id = '{projects['b']}'",
            f"SELECT count() FROM (SELECT * FROM spans) WHERE project_id = '{projects['b']}'",
            f"WITH other AS (SELECT * FROM spans WHERE project_id = '{projects['b']}') SELECT count() FROM other",
            f"SELECT count() FROM sessions WHERE session_id IN (SELECT session_id FROM spans WHERE project_id = '{projects['b']}')",
            f"SELECT uniqExactMerge(calls) FROM mcp_server_stats WHERE project_id = '{projects['b']}'",
        ):
            answer = await sql(client, admin, query)
            assert answer.status_code == 200, (query, answer.text)
            assert answer.json()["rows"] == [[0]], query
        stats = await sql(client, admin, "SELECT uniqExactMerge(calls) FROM mcp_server_stats")
        assert stats.json()["rows"] == [[3]]
        # Counts and extremes that ClickHouse could answer from part metadata respect the filter too.
        shortcut = await sql(client, admin, "SELECT count(), max(latency_ms) FROM spans")
        assert shortcut.json()["rows"] == [[3, 100.0 * 3]]  # A's slowest of 3 calls; B's slowest is 500
        # Project B's admin sees B's rows through the same endpoint.
        other = await sql(client, projects["b_key"], "SELECT count() FROM spans FINAL")
        assert other.json()["rows"] == [[5]]


@pytest.mark.parametrize("query, needle", [
    ("SELECT count() FROM system.tables", "system.tables cannot be queried"),
    ("SELECT * FROM merge('spanstream', '.*')", "table function merge()"),
    ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'x String')", "table function url()"),
    ("SELECT file('/etc/passwd')", "function file()"),
    ("SELECT * FROM mcp_server_stats_from_spans", "mcp_server_stats_from_spans cannot be queried"),
    ("SELECT * FROM schema_migrations", "schema_migrations cannot be queried"),
    ("SELECT count() FROM spans WHERE span_id IN system.one", "system.one cannot be queried"),
    ("SELECT dictGet('d', 'x', 1)", "function dictGet()"),
])
async def test_reads_outside_the_project_tables_are_forbidden(settings, store, projects, query, needle):
    async with client_for(settings, store) as client:
        answer = await sql(client, projects["keys"]["admin"], query)
    assert answer.status_code == 403, answer.text
    assert needle in answer.json()["detail"]


@pytest.mark.parametrize("query, needle", [
    ("SELECT 1; DROP TABLE spans", "one statement only"),
    ("SELECT count() FROM spans SETTINGS additional_table_filters = {}", "SETTINGS clauses are not allowed"),
    ("SELECT * FROM (SELECT * FROM spans SETTINGS readonly = 0)", "SETTINGS clauses are not allowed"),
    ("INSERT INTO spans (project_id, span_id) VALUES ('x', 'y')", "only SELECT"),
    ("DROP TABLE spans", "only a SELECT"),
    ("SHOW TABLES", "only a SELECT"),
    ("SELECT 1 FORMAT JSON", "FORMAT and INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/out.csv'", "FORMAT and INTO OUTFILE"),
    ("SELECT 1 AS `a\nTableIdentifier spans`", "line breaks"),
    ("SELEC 1", "Syntax error"),
    ("SELECT no_such_column FROM spans", "no_such_column"),
    ("   ", "empty"),
])
async def test_bad_queries_are_400_with_a_message(settings, store, projects, query, needle):
    async with client_for(settings, store) as client:
        answer = await sql(client, projects["keys"]["admin"], query)
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["detail"]


async def test_refused_queries_leave_the_store_writable(settings, store, projects):
    """chdb applies some settings for the session; a refused query must not leave it read-only."""
    admin = projects["keys"]["admin"]
    async with client_for(settings, store) as client:
        for query in ("INSERT INTO spans (span_id) VALUES ('x')", "SELECT count() FROM spans SETTINGS readonly = 1",
                      "SELECT * FROM spans WHERE 0", "SELECT * FROM spans LIMIT 0", "SELEC 1"):
            await sql(client, admin, query)
        await sql(client, admin, "SELECT 1")
    session = f"after-{uuid.uuid4().hex[:6]}"
    seed_spans(store, [tool_call(projects["a"], session, NOW, 5.0)])
    rows = store.query_sync("SELECT count() AS n FROM spans WHERE session_id = {s:String}", {"s": session})
    assert rows == [{"n": 1}]


async def test_only_admins_may_query(settings, store, projects):
    async with client_for(settings, store) as client:
        for role in ("member", "viewer"):
            answer = await sql(client, projects["keys"][role], "SELECT 1")
            assert answer.status_code == 403 and "admin" in answer.json()["detail"]
        assert (await client.post("/api/sql", json={"sql": "SELECT 1"})).status_code == 401


async def test_caps_turn_into_400s_with_clickhouses_message(settings, store, projects):
    admin = projects["keys"]["admin"]
    async with client_for(settings, store, sql_max_execution_seconds=0.5, sql_max_memory_bytes=32 * 1024 * 1024,
                          sql_max_result_rows=10) as client:
        slow = await sql(client, admin, "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0")
        assert slow.status_code == 400 and "TIMEOUT_EXCEEDED" in slow.json()["detail"], slow.text
        big = await sql(client, admin, "SELECT groupArray(toString(number)) FROM numbers(20000000)")
        assert big.status_code == 400 and "MEMORY_LIMIT_EXCEEDED" in big.json()["detail"], big.text
        many = await sql(client, admin, "SELECT number FROM numbers(11)")
        assert many.status_code == 400 and "TOO_MANY_ROWS" in many.json()["detail"], many.text
        assert (await sql(client, admin, "SELECT number FROM numbers(10)")).json()["row_count"] == 10


async def test_values_come_back_as_json(settings, store, projects):
    async with client_for(settings, store) as client:
        answer = await sql(client, projects["keys"]["admin"], """
            SELECT toDateTime64('2026-03-01 12:00:00.5', 3, 'UTC') AS at, toDecimal64(1.25, 2) AS price,
                   nan AS not_a_number, [1, 2] AS list, map('k', 1) AS dict,
                   toUUID('00000000-0000-0000-0000-000000000001') AS id, 1, 1""")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [c["name"] for c in body["columns"]] == ["at", "price", "not_a_number", "list", "dict", "id", "1", "1"]
    assert body["rows"] == [["2026-03-01T12:00:00.500000+00:00", "1.25", None, [1, 2], {"k": 1},
                             "00000000-0000-0000-0000-000000000001", 1, 1]]


async def test_an_empty_answer_still_names_its_columns(settings, store, projects):
    async with client_for(settings, store) as client:
        for query in ("SELECT session_id, spans FROM sessions FINAL WHERE spans > 1000000",
                      "SELECT session_id, spans FROM sessions FINAL LIMIT 0"):
            answer = await sql(client, projects["keys"]["admin"], query)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"columns": [{"name": "session_id", "type": "String"},
                                                 {"name": "spans", "type": "UInt32"}], "rows": [], "row_count": 0}
