"""The live feed through a real server: real SSE clients, events produced to real Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.repositories.projects import project_by_ref
from schemas.span import Span, encode_spans, session_messages
from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer
from tests.live_helpers import SseStream, open_stream, serve_app, viewer_project
from tests.metadata import PASSWORD, new_user, unique


@pytest.fixture(scope="module")
def live_settings(settings):
    ensure_topics(settings)
    # Short keepalives let a reader check its deadline often.
    return settings.model_copy(update={"live_keepalive_seconds": 0.5})


def new_project(dsn: str) -> tuple[str, str]:
    return viewer_project(dsn, "live")


def span(project_id: str, session_id: str, span_id: str, agent: str = "planner", **fields) -> Span:
    started = datetime.now(UTC) - timedelta(seconds=1)
    return Span(project_id=project_id, session_id=session_id, span_id=span_id, agent_name=agent,
                span_type="llm", model_id="gpt-4o", started_at=started, ended_at=started + timedelta(milliseconds=40),
                **fields)


class Topics:
    """Produces what the fold worker, health checker and alerter would publish, to this test's topics."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.producer = make_producer(settings)

    def spans(self, spans: list[Span]) -> None:
        # Batch messages: one message per session, as HTTP ingestion publishes them.
        for key, value in session_messages(spans):
            self.producer.produce(self.settings.spans_topic, key=key, value=value)
        self.producer.flush(10)

    def raw_spans(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.settings.spans_topic, key=key, value=value)
        self.producer.flush(10)

    def record(self, topic: str, record: dict) -> None:
        self.producer.produce(topic, key=str(record.get("session_id", record["project_id"])).encode(),
                              value=json.dumps(record).encode())
        self.producer.flush(10)

    def session(self, project_id: str, session_id: str, version: int, agents=("planner",)) -> dict:
        record = {"project_id": project_id, "session_id": session_id, "version": version, "spans": version,
                  "agents": list(agents), "health_tag": "success", "status": "open"}
        self.record(self.settings.sessions_topic, record)
        return record

    def health_tag(self, project_id: str, session_id: str, version: int, tag: str = "tool_failure", agents=("planner",)) -> dict:
        record = {"project_id": project_id, "session_id": session_id, "version": version, "health_tag": tag,
                  "previous_tag": "success", "at": datetime.now(UTC).isoformat(), "agents": list(agents)}
        self.record(self.settings.health_topic, record)
        return record

    def health_check(self, project_id: str, server: str, status: str) -> dict:
        record = {"project_id": project_id, "server_name": server, "status": status, "latency_ms": 12.5,
                  "checked_at": datetime.now(UTC).isoformat()}
        self.record(self.settings.health_checks_topic, record)
        return record

    def alert(self, project_id: str, alert_id: str, **fields) -> dict:
        record = {"project_id": project_id, "alert_id": alert_id, "rule": "mcp_server_down", "state": "firing", **fields}
        self.record(self.settings.alerts_topic, record)
        return record


def event_key(kind: str, data: dict) -> tuple:
    """What tells one event from another in these tests."""
    if kind == "span:new":
        return (kind, data["span_id"])
    if kind in ("session:updated", "health:tag"):
        return (kind, data["session_id"], data["version"])
    if kind == "health:check":
        return (kind, data["server_name"], data["status"])
    return (kind, data["alert_id"])


def read_until(stream, expected: set[tuple], timeout: float = 30.0, stop_after: int | None = None,
               grace: float = 1.5) -> list[tuple]:
    """Keys of the events read until all of `expected` came (then `grace` seconds more, to catch
    extras and duplicates), or until `stop_after` events."""
    received: list[tuple] = []
    deadline = time.monotonic() + timeout
    done_at = None
    while time.monotonic() < (done_at or deadline):
        block = stream.next_block()
        if block is None:
            break
        if block.data is None:
            continue
        received.append(event_key(block.event, json.loads(block.data)))
        if stop_after is not None and len(received) >= stop_after:
            return received
        if done_at is None and expected <= set(received):
            done_at = time.monotonic() + grace
    return received


def test_every_kind_of_event_arrives_and_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(live_settings):
    project_id, key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    # Two API processes: a client may resume on another one than it left.
    with serve_app(live_settings) as first, serve_app(live_settings) as second:
        with open_stream(first.base, key) as stream:
            connected_id = stream.next_block().id
            assert connected_id and connected_id.startswith("1~")
            # One message holding five spans: the client leaves partway into it.
            batch = [span(project_id, "s-1", f"s-1-{i}", llm_input="x" * 1000) for i in range(5)]
            topics.spans(batch)
            sent = [("span:new", s.span_id) for s in batch]
            received = read_until(stream, set(sent), stop_after=3)
            left_at = stream.last_id
        assert received == sent[:3]  # in the message's order
        assert "~+s" in left_at  # the id points into the message: three of its five spans were sent

        # While the client is away: every topic, several partitions.
        missed = sent[3:]
        more = [span(project_id, f"s-{n}", f"s-{n}-{i}") for n in range(2, 6) for i in range(2)]
        topics.spans(more)
        missed += [("span:new", s.span_id) for s in more]
        for n in range(2, 6):
            topics.session(project_id, f"s-{n}", 2)
            missed.append(("session:updated", f"s-{n}", 2))
        topics.health_tag(project_id, "s-2", 2)
        topics.health_check(project_id, "github-mcp", "down")
        topics.alert(project_id, "a-1")
        missed += [("health:tag", "s-2", 2), ("health:check", "github-mcp", "down"), ("alert", "a-1")]

        with open_stream(second.base, key, headers={"Last-Event-ID": left_at}) as stream:
            resumed = read_until(stream, set(missed))
        assert Counter(resumed) == Counter(missed)  # each missed event once, nothing seen before

        # From the id it had on connecting, a client gets everything since, once.
        with open_stream(first.base, key, last_event_id=connected_id) as stream:
            again = read_until(stream, set(sent) | set(missed))
        assert Counter(again) == Counter(sent[:3] + missed)
        assert second.app.state.live.stats.events_resent >= len(missed)

    # Spans arrive without their payloads (up to 128 KiB each); GET /api/spans has them.
    with serve_app(live_settings) as served, open_stream(served.base, key) as stream:
        stream.next_block()
        topics.spans([span(project_id, "s-9", "s-9-0", llm_input="secret prompt", llm_output="answer")])
        event = next(stream.events(time.monotonic() + 30))
        data = json.loads(event.data)
        assert event.event == "span:new" and data["span_id"] == "s-9-0" and data["agent_name"] == "planner"
        assert "llm_input" not in data and "llm_output" not in data


def test_a_streams_ids_name_only_the_topics_it_reads_and_resume_from_them_exactly(live_settings):
    project_id, key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    with serve_app(live_settings) as served:
        with open_stream(served.base, key, types="span:new,alert") as stream:
            connected = stream.next_block().id
            assert connected.startswith("1~s") and "~a" in connected and "~n" not in connected and "~h" not in connected
            topics.spans([span(project_id, "t-1", "t-1-0")])
            topics.session(project_id, "t-1", 1)
            assert read_until(stream, {("span:new", "t-1-0")}) == [("span:new", "t-1-0")]
            left_at = stream.last_id
        assert "~n" not in left_at and "~s" in left_at
        # Missed while away: a span and an alert it wants, a session and a tag it does not.
        topics.spans([span(project_id, "t-2", "t-2-0")])
        topics.session(project_id, "t-2", 1)
        topics.health_tag(project_id, "t-2", 1)
        topics.alert(project_id, "t-alert")
        with open_stream(served.base, key, types="span:new,alert", headers={"Last-Event-ID": left_at}) as stream:
            resumed = read_until(stream, {("span:new", "t-2-0"), ("alert", "t-alert")})
        assert Counter(resumed) == Counter([("span:new", "t-2-0"), ("alert", "t-alert")])
        # Asking for more types with that id: the new types from now on, not the sessions
        # topic read back from its start; what it missed of its own types, once.
        with open_stream(served.base, key, headers={"Last-Event-ID": left_at}) as stream:
            replayed = read_until(stream, {("span:new", "t-2-0"), ("alert", "t-alert")})
            topics.session(project_id, "t-3", 1)
            later = read_until(stream, {("session:updated", "t-3", 1)})
        assert Counter(replayed) == Counter([("span:new", "t-2-0"), ("alert", "t-alert")])
        assert later == [("session:updated", "t-3", 1)]


def test_with_no_client_connected_the_feed_reads_nothing_and_a_new_client_starts_from_its_connect(live_settings):
    project_id, key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    with serve_app(live_settings) as served:
        stats = served.app.state.live.stats
        with open_stream(served.base, key) as stream:
            stream.next_block()
            topics.spans([span(project_id, "watched", "watched-0")])
            assert read_until(stream, {("span:new", "watched-0")}, grace=0) == [("span:new", "watched-0")]
        deadline = time.monotonic() + 10
        while stats.clients and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the reader notices nobody is left
        before = stats.messages_read
        # Produced while nobody watches: fetched by no one, and no later client's.
        topics.spans([span(project_id, f"unwatched-{i}", f"unwatched-{i}") for i in range(20)])
        for i in range(20):
            topics.session(project_id, f"unwatched-{i}", 1)
        time.sleep(1.5)
        assert stats.messages_read == before
        with open_stream(served.base, key) as stream:
            stream.next_block()
            topics.spans([span(project_id, "after", "after-0")])
            assert read_until(stream, {("span:new", "after-0")}) == [("span:new", "after-0")]
        assert stats.messages_read > before


def test_a_client_sees_only_its_own_projects_events(live_settings):
    mine, key = new_project(live_settings.postgres_dsn)
    other, other_key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    with serve_app(live_settings) as served:
        with open_stream(served.base, key) as stream, open_stream(served.base, other_key) as other_stream:
            stream.next_block(), other_stream.next_block()
            for project in (other, mine):
                topics.spans([span(project, f"{project}-s", f"{project}-span")])
                topics.session(project, f"{project}-s", 1)
                topics.health_tag(project, f"{project}-s", 1)
                topics.health_check(project, f"{project}-server", "up")
                topics.alert(project, f"{project}-alert")
            # A bare producer's message mixing both projects' spans.
            topics.raw_spans(b"mixed", encode_spans([span(other, "mixed", "theirs"), span(mine, "mixed", "ours")]))
            expected = {("span:new", f"{mine}-span"), ("session:updated", f"{mine}-s", 1), ("health:tag", f"{mine}-s", 1),
                        ("health:check", f"{mine}-server", "up"), ("alert", f"{mine}-alert"), ("span:new", "ours")}
            assert Counter(read_until(stream, expected)) == Counter(expected)
            theirs = set(read_until(other_stream, {("span:new", "theirs")}))
            assert ("span:new", "theirs") in theirs and not theirs & expected

        # Without a key, or with a wrong one, nothing streams.
        assert httpx.get(f"{served.base}/api/live/events").status_code == 401
        wrong = httpx.get(f"{served.base}/api/live/events", params={"api_key": "ss_wrong"})
        assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]


def test_filters_by_event_type_agent_and_session(live_settings):
    project_id, key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    with serve_app(live_settings) as served:
        with open_stream(served.base, key, types="span:new,alert") as by_type, \
                open_stream(served.base, key, agent="reviewer") as by_agent, \
                open_stream(served.base, key, session_id="s-a") as by_session:
            for stream in (by_type, by_agent, by_session):
                stream.next_block()
            topics.spans([span(project_id, "s-a", "a-planner"), span(project_id, "s-a", "a-reviewer", agent="reviewer"),
                          span(project_id, "s-b", "b-planner")])
            topics.session(project_id, "s-a", 2, agents=("planner", "reviewer"))
            topics.session(project_id, "s-b", 1)
            topics.health_tag(project_id, "s-a", 2, agents=("planner", "reviewer"))
            topics.health_tag(project_id, "s-b", 1)
            topics.health_check(project_id, "search-mcp", "degraded")
            topics.alert(project_id, "cost-1", session_id="s-b")

            assert Counter(read_until(by_type, {("span:new", "a-planner"), ("span:new", "a-reviewer"),
                                                ("span:new", "b-planner"), ("alert", "cost-1")})) == Counter(
                [("span:new", "a-planner"), ("span:new", "a-reviewer"), ("span:new", "b-planner"), ("alert", "cost-1")])
            # Events that name no agent (a server's health check, this alert) are not the agent's.
            assert Counter(read_until(by_agent, {("span:new", "a-reviewer"), ("session:updated", "s-a", 2),
                                                 ("health:tag", "s-a", 2)})) == Counter(
                [("span:new", "a-reviewer"), ("session:updated", "s-a", 2), ("health:tag", "s-a", 2)])
            assert Counter(read_until(by_session, {("span:new", "a-planner"), ("span:new", "a-reviewer"),
                                                   ("session:updated", "s-a", 2), ("health:tag", "s-a", 2)})) == Counter(
                [("span:new", "a-planner"), ("span:new", "a-reviewer"), ("session:updated", "s-a", 2), ("health:tag", "s-a", 2)])

        unknown = httpx.get(f"{served.base}/api/live/events", params={"types": "span:new,spans"}, headers={"X-API-Key": key})
        assert unknown.status_code == 422 and "spans" in unknown.json()["detail"]
        garbled = httpx.get(f"{served.base}/api/live/events", headers={"X-API-Key": key, "Last-Event-ID": "1~q1.2"})
        assert garbled.status_code == 400 and "Last-Event-ID" in garbled.json()["detail"]


def test_past_the_client_cap_the_next_client_gets_an_error_event_and_the_stream_ends(live_settings):
    project_id, key = new_project(live_settings.postgres_dsn)
    with serve_app(live_settings.model_copy(update={"live_max_clients": 2})) as served:
        with open_stream(served.base, key) as one, open_stream(served.base, key) as two:
            one.next_block(), two.next_block()
            with open_stream(served.base, key) as third:
                error = third.next_block()
                assert error.event == "error" and "maximum of 2" in json.loads(error.data)["detail"]
                assert third.next_block() is None  # the stream closed
            assert served.app.state.live.stats.clients_rejected == 1
        # Once clients leave there is room again.
        deadline = time.monotonic() + 10
        while served.app.state.live.stats.clients and time.monotonic() < deadline:
            time.sleep(0.1)
        with open_stream(served.base, key) as again:
            assert again.next_block().comment == "connected"
        assert served.app.state.live.stats.clients_rejected == 1


def test_a_client_that_does_not_keep_up_loses_its_oldest_events_and_they_are_counted(live_settings):
    project_id, key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    buffer = 5
    with serve_app(live_settings.model_copy(update={"live_client_buffer": buffer})) as served:
        stats = served.app.state.live.stats
        with open_stream(served.base, key, types="alert") as stream:
            stream.next_block()
            # 60 alerts of 256 KB: far more than the socket buffers hold while the client reads nothing.
            sent = [("alert", f"big-{i:03}") for i in range(60)]
            for _, alert_id in sent:
                topics.alert(project_id, alert_id, note="x" * 256_000)
            deadline = time.monotonic() + 30
            while stats.events_read < len(sent) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            assert stats.events_dropped > 0
            received = read_until(stream, set(sent[-buffer:]))
        # The newest were kept, in order; what is missing is exactly what was counted as dropped.
        assert received == sorted(received) and set(sent[-buffer:]) <= set(received)
        assert len(received) + stats.events_dropped == len(sent)


def test_a_logged_in_user_watches_a_project_it_belongs_to_with_the_token_in_the_url(live_settings):
    slug, theirs = unique("live-user"), unique("live-other")
    email = asyncio.run(new_user(live_settings, slug, role="viewer"))
    asyncio.run(new_user(live_settings, theirs))
    project_id = asyncio.run(_project_id(live_settings.postgres_dsn, slug))
    topics = Topics(live_settings)
    with serve_app(live_settings) as served:
        token = httpx.post(f"{served.base}/api/auth/login", json={"email": email, "password": PASSWORD}).json()["token"]
        events = f"{served.base}/api/live/events"
        no_project = httpx.get(events, params={"api_key": token})
        not_a_member = httpx.get(events, params={"api_key": token, "project": theirs})
        assert no_project.status_code == 400 and "X-Project" in no_project.json()["detail"]
        assert not_a_member.status_code == 404
        with httpx.Client(timeout=30) as client, client.stream("GET", events, params={"api_key": token, "project": slug}) as response:
            assert response.status_code == 200
            stream = SseStream(response)
            stream.next_block()
            topics.alert(project_id, "for-the-user")
            assert read_until(stream, {("alert", "for-the-user")}) == [("alert", "for-the-user")]


async def _project_id(dsn: str, slug: str) -> str:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return str((await project_by_ref(pool, slug)).id)
    finally:
        await pool.close()


def test_while_kafka_cannot_be_read_a_client_gets_an_error_event_and_the_api_still_starts(live_settings):
    _, key = new_project(live_settings.postgres_dsn)
    with serve_app(live_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})) as served:
        with open_stream(served.base, key) as stream:
            error = stream.next_block()
            assert error.event == "error" and "not reading Kafka" in json.loads(error.data)["detail"]
            assert stream.next_block() is None
        assert served.app.state.live.stats.clients == 0


def test_a_span_reaches_a_watching_client_within_a_fraction_of_a_second(live_settings):
    # The reader's fetches are held at the broker for a flush interval (a fetch per produce
    # request cost the broker a fifth of a core at a thousand spans a second): an event still
    # waits at most about one interval there, not one there and another in the feed.
    project, key = new_project(live_settings.postgres_dsn)
    topics = Topics(live_settings)
    with serve_app(live_settings) as served, open_stream(served.base, key, types="span:new") as stream:
        stream.next_block()
        waits = []
        for index in range(20):
            sent = time.monotonic()
            topics.raw_spans(b"prompt", encode_spans([span(project, "prompt", f"prompt-{index}")]))
            assert read_until(stream, {("span:new", f"prompt-{index}")}, timeout=10, stop_after=1) == [
                ("span:new", f"prompt-{index}")]
            waits.append(time.monotonic() - sent)
            time.sleep(0.03)
    waits.sort()
    # The flush interval is 0.05 s; the margin is for a machine other work shares.
    assert waits[len(waits) // 2] < 0.3, waits
