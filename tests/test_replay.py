"""Replay rebuilds the derived views from the topic, and they equal the live worker's."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from loadtests.generate import generate_sessions
from schemas.span import ERROR_CAP, MAX_TOKENS, PAYLOAD_CAP, Span, session_messages
from spanstream.kafka import delete_topics, ensure_topics
from spanstream.producer import make_producer
from spanstream.replay import replay
from spanstream.insert_bodies import cost_values, encode_columns, span_values
from spanstream.replay_store import raw_insert
from streams.pricing import PriceBook
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS, cost_rows, health_row, session_row
from streams.sessions import SessionState, fold, from_us, session_record
from streams.sink import SPAN_COLUMNS, ClickHouseWriter, span_row, span_writer
from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_end_to_end import _new_project

COMPARED = ("spans", "llm_calls", "tool_calls", "failed_calls", "errors", "agents", "servers", "models",
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "thinking_tokens",
            "cost_nano_usd", "unpriced_calls", "health_tag", "status", "version", "duration_ms")


@pytest.fixture(scope="module")
def live(settings, tmp_path_factory):
    running, topics = serve_for_tests(settings, tmp_path_factory.mktemp("replay"), "replay", free_port())
    yield running, topics
    assert running.stop() == 0


def test_replayed_views_equal_the_live_ones(settings, store, live):
    running, topics = live
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    sessions = generate_sessions(11, 40, 12, project_id, start)
    spans = [span for session in sessions for span in session]
    # Hostile delivery: shuffled, split into several messages, some spans twice.
    delivery = spans + random.Random(3).sample(spans, 30)
    random.Random(4).shuffle(delivery)
    producer = make_producer(settings)
    for index in range(0, len(delivery), 7):
        for message_key, value in session_messages(delivery[index:index + 7]):
            producer.produce(topics["spans"], key=message_key, value=value)
    assert producer.flush(30) == 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = httpx.get(f"{running.base}/api/agents/sessions/summary", headers={"X-API-Key": key}).json()
        if summary["spans"] == len(spans):
            break
        time.sleep(0.3)
    assert summary["spans"] == len(spans) and summary["sessions"] == 40

    lines: list[str] = []
    replay_settings = settings.model_copy(update={"spans_topic": topics["spans"], "worker_id": topics["worker_id"]})
    progress = replay(replay_settings, store, report=lines.append)
    assert progress.spans == len(delivery)
    assert any("ETA" in line for line in lines)
    assert any("swapped in spans, mcp_server_stats, sessions" in line for line in lines), lines
    assert "no spans were published while it ran" in lines[-1]

    replayed = {row["session_id"]: row for row in store.query_sync(
        "SELECT * FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
    assert len(replayed) == 40
    for session_id, row in replayed.items():
        live_row = httpx.get(f"{running.base}/api/agents/sessions/{session_id}", headers={"X-API-Key": key}).json()
        assert {name: live_row[name] for name in COMPARED} == {name: row[name] for name in COMPARED}, session_id
        live_costs = sum(cell["cost_nano_usd"] for cell in live_row["costs"])
        assert live_costs == row["cost_nano_usd"]
    replayed_spans = store.query_sync("SELECT count() AS n FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id})
    assert replayed_spans[0]["n"] == len(spans)

    # A second replay, costs only, changes nothing: the views are a function of the log.
    replay(replay_settings, store, reprice=True, report=lines.append)
    again = {row["session_id"]: row for row in store.query_sync(
        "SELECT * FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
    assert again == replayed

    # --from: only sessions with spans since then are rebuilt, in place, from all their spans.
    since = datetime.now(UTC)
    time.sleep(0.01)
    touched = sessions[0][0].session_id
    late = sessions[0][1].model_copy(update={"span_id": "late-span", "started_at": start + timedelta(minutes=20),
                                             "ended_at": start + timedelta(minutes=21)})
    fresh = sessions[1][0].model_copy(update={"session_id": "fresh-session", "span_id": "fresh-1"})
    for message_key, value in session_messages([late, fresh]):
        producer.produce(topics["spans"], key=message_key, value=value)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = httpx.get(f"{running.base}/api/agents/sessions/summary", headers={"X-API-Key": key}).json()
        if summary["spans"] == len(spans) + 2:
            break
        time.sleep(0.3)
    lines.clear()
    replay(replay_settings, store, since=since, report=lines.append)
    assert any("2 sessions have spans since" in line for line in lines), lines
    after = {row["session_id"]: row for row in store.query_sync(
        "SELECT * FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
    assert set(after) == set(replayed) | {"fresh-session"}
    for session_id in (touched, "fresh-session"):
        live_row = httpx.get(f"{running.base}/api/agents/sessions/{session_id}", headers={"X-API-Key": key}).json()
        assert {name: live_row[name] for name in COMPARED} == {name: after[session_id][name] for name in COMPARED}
    assert after[touched]["spans"] == replayed[touched]["spans"] + 1
    untouched = [s for s in replayed if s != touched]
    assert all(after[s] == replayed[s] for s in untouched)


def _awkward_spans() -> list[Span]:
    """Spans whose values are easy to get subtly wrong on the way to ClickHouse."""
    at = datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
    common = {"project_id": "rows-test", "session_id": "rows", "span_type": "tool_call", "server_name": "srv"}
    return [
        Span(**common, span_id="plain", started_at=at, ended_at=at + timedelta(microseconds=1)),
        Span(**{**common, "span_type": "agent"}, span_id="open", started_at=at.replace(microsecond=999_999)),
        Span(**common, span_id="text", name="ü✓😀 \"quoted\" \\ \n\t\x01\u2028", input_args={"q": "é", "n": [1, 2.5]},
             llm_output="x" * (PAYLOAD_CAP + 5), error="e" * (ERROR_CAP + 1), latency_ms=-0.0, started_at=at),
        Span(**common, span_id="first-hour", started_at=datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
             latency_ms=0.1 + 0.2, model_id="gpt-4o", input_tokens=MAX_TOKENS, thinking_tokens=7),
        Span(**common, span_id="extra", started_at=at + timedelta(hours=1), custom={"k": ["v", 1.5e300, None, True]},
             attributes={"ü": "é", "big": 10**30}, truncated_fields=["error"], model_id="claude-sonnet-4-5",
             agent_name="writer", input_tokens=1200, output_tokens=300),
    ]


def test_insert_bodies_read_back_as_the_sinks_rows(store, tmp_path):
    """What a replay worker encodes reads back exactly as the live sink's rows would."""
    spans = _awkward_spans()
    assert [span_values(span) for span in spans] == [span_row(span) for span in spans]
    record = session_record(_folded(spans), "failing")
    assert len(record["costs"]) > 1 and cost_values(record) == cost_rows(record)
    tables = {
        "spans": (SPAN_COLUMNS, [span_row(span) for span in spans]),
        "sessions": (SESSION_COLUMNS, [session_row(record)]),
        "session_costs": (COST_COLUMNS, cost_rows(record)),
        "session_health": (HEALTH_COLUMNS, [health_row({**record, "version": 3, "previous_tag": "",
                                                        "at": from_us(-1).isoformat()})]),
    }
    for table, (columns, rows) in tables.items():
        body = encode_columns(columns, rows)
        assert body is not None, table
        for copy in ("native", "json"):
            store.command_sync(f"DROP TABLE IF EXISTS {table}_{copy}")
            store.command_sync(f"CREATE TABLE {table}_{copy} AS {table}")
            if table == "spans":  # the retention would drop the old spans on insert
                store.command_sync(f"ALTER TABLE {table}_{copy} REMOVE TTL")
        store.insert_sync(f"{table}_native", rows, columns)
        (tmp_path / table).write_bytes(body)
        raw_insert(store, f"{table}_json", columns, tmp_path / table)
        read = [store.query_sync(f"SELECT {', '.join(columns)} FROM {table}_{copy} ORDER BY ALL")
                for copy in ("native", "json")]
        assert read[0] == read[1] and len(read[0]) == len(rows), table
        for copy in ("native", "json"):
            store.command_sync(f"DROP TABLE {table}_{copy}")


def test_values_json_cannot_carry_go_the_usual_way():
    # Span validation refuses these values; rows built some other way are still guarded.
    plain = span_values(_awkward_spans()[0])
    assert encode_columns(SPAN_COLUMNS, [plain]) is not None
    for column, value in (("latency_ms", float("inf")), ("started_at", datetime(1800, 1, 1, tzinfo=UTC)),
                          ("input_tokens", 2**64)):
        row = list(plain)
        row[SPAN_COLUMNS.index(column)] = value
        assert encode_columns(SPAN_COLUMNS, [row]) is None, column


def _folded(spans: list[Span]) -> SessionState:
    state = SessionState(spans[0].project_id, spans[0].session_id)
    book = PriceBook([], Decimal("0.0123"))
    for span in spans:
        price = book.price_span(span)
        fold(state, span, price.nano_usd, price.priced)
    return state


@contextlib.contextmanager
def _own_topics(settings, suffix: str):
    """Settings with topics of their own for one test, created now and deleted after it."""
    own = settings.model_copy(update={name: f"{getattr(settings, name)}-{suffix}"
                                      for name in ("spans_topic", "sessions_topic", "health_topic")})
    ensure_topics(own)
    try:
        yield own
    finally:
        delete_topics(own)


MCP_STATS = """
    SELECT server_name, tool_name, hour, uniqExactMerge(calls) AS calls, uniqExactIfMerge(failures) AS failures,
           uniqExactIfMerge(timeouts) AS timeouts, max(last_call_at) AS last_call_at
    FROM mcp_server_stats WHERE project_id = {p:String}
    GROUP BY server_name, tool_name, hour ORDER BY server_name, tool_name, hour"""


def _by_cell(stats: list[dict]) -> dict[tuple, dict]:
    return {(row["server_name"], row["tool_name"], row["hour"]): row for row in stats}


def test_a_full_replay_rebuilds_the_mcp_server_statistics(settings, store):
    """mcp_server_stats is kept by a materialized view on inserts into `spans`, which inserts
    into `spans__replay` never reach: replay rebuilds it, and the view still feeds it after the
    swap. The live worker's sink here is span_writer in this process: the live server has its
    own chdb directory, and a process may open only one."""
    suffix = uuid.uuid4().hex[:8]
    with _own_topics(settings, f"stats-{suffix}") as own:
        project_id = f"stats-{suffix}"
        # A minute before an hour starts, so that the calls fall into two hours.
        start = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=59, second=0, microsecond=0)
        spans = [span for session in generate_sessions(5, 60, 15, project_id, start) for span in session]
        redelivered = random.Random(5).sample(spans, 40)
        producer = make_producer(own)
        for message_key, value in session_messages(spans) + session_messages(redelivered):
            producer.produce(own.spans_topic, key=message_key, value=value)
        assert producer.flush(30) == 0
        sink = span_writer(store)
        for span in spans + redelivered:
            sink.add(span_row(span))
        asyncio.run(sink.flush())
        before = store.query_sync(MCP_STATS, {"p": project_id})
        assert sum(row["calls"] for row in before) == sum(span.span_type == "tool_call" for span in spans)
        assert any(row["failures"] for row in before) and len({row["hour"] for row in before}) > 1

        # Lost, as a view's table is when it is created after the spans or restored from an older copy.
        store.command_sync("TRUNCATE TABLE mcp_server_stats")
        replay(own, store, report=lambda line: None)
        assert store.query_sync(MCP_STATS, {"p": project_id}) == before

        tool = next(span for span in spans if span.span_type == "tool_call")
        late = tool.model_copy(update={"span_id": "after-replay", "status": "timeout"})
        sink.add(span_row(late))
        asyncio.run(sink.flush())
        where = (tool.server_name, tool.tool_name, tool.started_at.replace(minute=0, second=0, microsecond=0, tzinfo=None))
        cell = _by_cell(before)[where]
        grown = _by_cell(store.query_sync(MCP_STATS, {"p": project_id}))[where]
        assert (grown["calls"], grown["failures"], grown["timeouts"]) == (
            cell["calls"] + 1, cell["failures"] + 1, cell["timeouts"] + 1)


class _FailingBook(PriceBook):
    """Pickled by reference into the replay workers, where pricing the first span fails."""

    def price_span(self, span):
        raise RuntimeError("pricing failed")


def test_a_failing_worker_fails_the_replay_and_leaves_the_views_as_they_were(settings, store, monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    with _own_topics(settings, f"fail-{suffix}") as own:
        spans = [span for session in generate_sessions(6, 5, 4, f"fail-{suffix}", datetime.now(UTC)) for span in session]
        producer = make_producer(own)
        for message_key, value in session_messages(spans):
            producer.produce(own.spans_topic, key=message_key, value=value)
        assert producer.flush(30) == 0
        before = {table: store.query_sync(f"SELECT count() AS n FROM {table}")[0]["n"]
                  for table in ("spans", "sessions", "session_costs", "session_health", "mcp_server_stats")}

        async def failing_book(*_):
            return _FailingBook([], Decimal("0.01"))

        monkeypatch.setattr("spanstream.replay.load_price_book", failing_book)
        with pytest.raises(RuntimeError, match="replay worker .* exited with 1"):
            replay(own, store, report=lambda line: None)
        after = {table: store.query_sync(f"SELECT count() AS n FROM {table}")[0]["n"] for table in before}
        assert after == before


def test_what_the_live_sinks_write_during_a_replay_survives_the_swap(settings, store):
    """The live sinks keep writing the tables a replay is about to swap out. Spans published
    after the replay read its end offsets, and the sessions they make, must still be in the
    views afterwards. The live sinks here are writers in this process, on this process's store."""
    suffix = uuid.uuid4().hex[:8]
    with _own_topics(settings, f"during-{suffix}") as own:
        project_id = f"during-{suffix}"
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        early, late = generate_sessions(8, 2, 9, project_id, start)
        producer = make_producer(own)
        for message_key, value in session_messages(early):
            producer.produce(own.spans_topic, key=message_key, value=value)
        assert producer.flush(30) == 0
        sessions_sink = ClickHouseWriter(store, "sessions", SESSION_COLUMNS)
        spans_sink = span_writer(store)

        def live_sinks(spans):
            state = SessionState(project_id, spans[0].session_id)
            for span in spans:
                fold(state, span)
                spans_sink.add(span_row(span))
            sessions_sink.add(session_row(session_record(state, "success")))
            asyncio.run(spans_sink.flush())
            asyncio.run(sessions_sink.flush())

        live_sinks(early)
        published_late = []

        def report(line: str) -> None:
            if not published_late:  # the replay has read its end offsets: this comes after them
                published_late.append(True)
                for message_key, value in session_messages(late):
                    producer.produce(own.spans_topic, key=message_key, value=value)
                assert producer.flush(30) == 0
                live_sinks(late)

        lines: list[str] = []
        replay(own, store, report=lambda line: (report(line), lines.append(line)))
        rows = {row["session_id"]: row["spans"] for row in store.query_sync(
            "SELECT session_id, spans FROM sessions FINAL WHERE project_id = {p:String}", {"p": project_id})}
        assert rows == {early[0].session_id: 9, late[0].session_id: 9}
        spans = store.query_sync("SELECT count() AS n FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id})
        assert spans[0]["n"] == 18
        assert "1 sessions have spans since the rebuild began" in " ".join(lines), lines
