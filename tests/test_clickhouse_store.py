"""The store's reads: several at once beside the sinks' inserts, and answers reused only while
nothing they read was written (spanstream/clickhouse.py, spanstream/result_cache.py)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from spanstream.result_cache import ResultCache, tables_read
from tests.clickhouse_seed import NOW, seed_session, seed_spans, tool_call

pytestmark = pytest.mark.anyio

_SESSIONS = "SELECT session_id, agents FROM sessions FINAL WHERE project_id = {p:String} ORDER BY session_id"


def _project() -> str:
    return f"store-{uuid.uuid4().hex[:8]}"


async def test_a_reused_answer_never_hides_a_write(store):
    project = _project()
    assert await store.query(_SESSIONS, {"p": project}, cached=True) == []
    seed_session(store, project, "s1", NOW)
    assert [row["session_id"] for row in await store.query(_SESSIONS, {"p": project}, cached=True)] == ["s1"]
    seed_session(store, project, "s1", NOW, version=2, agents=["reviewer"])
    assert await store.query(_SESSIONS, {"p": project}, cached=True) == [{"session_id": "s1", "agents": ["reviewer"]}]


async def test_a_write_reaches_the_answers_over_the_view_it_feeds(store):
    # Spans feed mcp_server_stats through a materialized view: a span write changes that table too.
    project = _project()
    calls = """SELECT uniqExactMerge(calls) AS calls FROM mcp_server_stats
               WHERE project_id = {p:String} GROUP BY server_name"""
    assert await store.query(calls, {"p": project}, cached=True) == []
    seed_spans(store, [tool_call(project, "s1", NOW, 12.0)])
    assert await store.query(calls, {"p": project}, cached=True) == [{"calls": 1}]


async def test_a_command_makes_every_answer_be_asked_again(store):
    project = _project()
    seed_session(store, project, "s1", NOW)
    assert len(await store.query(_SESSIONS, {"p": project}, cached=True)) == 1
    store.command_sync("ALTER TABLE sessions DELETE WHERE project_id = {p:String} SETTINGS mutations_sync = 1",
                       {"p": project})
    assert await store.query(_SESSIONS, {"p": project}, cached=True) == []


async def test_a_caller_reshaping_its_rows_does_not_change_the_next_callers(store):
    project = _project()
    seed_session(store, project, "s1", NOW, agents=["planner"])
    first = await store.query(_SESSIONS, {"p": project}, cached=True)
    first[0]["agents"].append("intruder")
    first[0].pop("session_id")
    assert await store.query(_SESSIONS, {"p": project}, cached=True) == [{"session_id": "s1", "agents": ["planner"]}]


def test_only_answers_that_depend_on_the_tables_alone_are_reused():
    assert tables_read("SELECT a FROM sessions FINAL JOIN session_costs USING (session_id)") == {
        "sessions", "session_costs"}
    assert tables_read("SELECT a -- rows from the clock, now()\nFROM spans /* from elsewhere */") == {"spans"}
    for sql in ("SELECT now()", "SELECT count() FROM sessions WHERE last_at > now64(6)",
                "SELECT * FROM system.parts", "SELECT * FROM numbers(10)", "SELECT rand() FROM spans",
                "SELECT * FROM other_db.spans", "SELECT 1", "SELECT 1 FROM spans WHERE x = 'now()'"):
        assert tables_read(sql) is None, sql


def test_an_answer_is_reused_within_its_second_only():
    moment = [1000.2]
    cache = ResultCache(clock=lambda: moment[0])
    key = cache.key("SELECT 1 FROM sessions", {"p": "a"}, None)
    cache.put(key, cache.stamp(key), "answer", 1)
    assert cache.get(cache.key("SELECT 1 FROM sessions", {"p": "a"}, None)) == "answer"
    assert cache.get(cache.key("SELECT 1 FROM sessions", {"p": "b"}, None)) is None
    moment[0] = 1001.0
    assert cache.get(cache.key("SELECT 1 FROM sessions", {"p": "a"}, None)) is None


def test_an_answer_computed_while_a_write_ran_is_not_kept():
    cache = ResultCache(clock=lambda: 5.0)
    key = cache.key("SELECT 1 FROM spans", None, None)
    stamp = cache.stamp(key)  # the query starts
    cache.wrote(["spans"])  # a write finishes before the query does
    cache.put(key, stamp, "maybe without the write", 1)
    assert cache.get(key) is None


def test_reads_run_beside_inserts_and_see_whole_batches(store):
    """Readers on their own connections while the writer inserts: no errors, and every count a
    reader sees is a whole number of batches, never falling (an insert is atomic)."""
    project, batch, batches = _project(), 50, 20
    seen: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for number in range(batches):
                seed_spans(store, [tool_call(project, f"s{number}", NOW + timedelta(milliseconds=i), 1.0)
                                   for i in range(batch)])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            done.set()

    def read(into: list[int]) -> None:
        try:
            while not done.is_set():
                into.append(store.query_sync("SELECT count() AS n FROM spans FINAL WHERE project_id = {p:String}",
                                             {"p": project})[0]["n"])
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(s,)) for s in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert all(seen), "every reader got answers while the writer ran"
    for counts in seen:
        assert all(count % batch == 0 for count in counts)
        assert counts == sorted(counts)
    assert store.query_sync("SELECT count() AS n FROM spans WHERE project_id = {p:String}", {"p": project}) == [
        {"n": batch * batches}]


def test_the_session_reads_are_ones_the_store_may_reuse():
    # They judge `incomplete` at a bound second; a clock call in them would end all reuse.
    from api.repositories.sessions import SESSION_FIELDS

    assert tables_read(f"SELECT {SESSION_FIELDS} FROM sessions FINAL") == {"sessions"}


async def test_clients_asking_the_same_at_once_share_one_query(store):
    import asyncio

    project = _project()
    seed_session(store, project, "s1", NOW)
    ran = []
    select = store._select
    store._select = lambda *args: ran.append(args) or select(*args)
    try:
        answers = await asyncio.gather(*(store.query(_SESSIONS, {"p": project}, cached=True) for _ in range(20)))
    finally:
        del store._select
    assert all(answer == [{"session_id": "s1", "agents": ["planner"]}] for answer in answers)
    assert len(ran) <= 2  # one, or two if the second turned while they were asked
