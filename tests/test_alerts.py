"""Alerts end to end: health records on real Kafka, incidents in PostgreSQL, SLO and cost rules over
chdb, and webhooks to a real HTTP receiver that can be told to fail."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer
from tests.clickhouse_seed import NOW, new_project, seed_cost, seed_spans, tool_call
from tests.conftest import free_port
from tests.test_api_sql import client_for

pytestmark = pytest.mark.anyio
SECRET = "receiver-shared-secret-0123456789"
# Fast clocks for tests: the defaults are seconds to minutes.
FAST = {"alerts_poll_seconds": 0.1, "alerts_retry_base_seconds": 0.2, "alerts_evaluate_seconds": 0.3,
        "alerts_repeat_seconds": 0}


class Receiver:
    """A webhook receiver on a free port: records every request, answers `fail_status` to the
    first `fail_first` of them and 200 after."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500, port: int | None = None) -> None:
        self.requests: list[dict] = []
        self.fail_first, self.fail_status = fail_first, fail_status
        lock, receiver = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "json": orjson.loads(body)})
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= failing
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def events(self) -> list[tuple[str, str]]:
        return [(r["json"]["event"], r["json"]["incident"]["summary"]) for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**options) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture(scope="module")
def topics(settings):
    """The session's settings with topics of this module's own, created (other tests expect to
    create the session's topics themselves)."""
    names = ("spans_topic", "sessions_topic", "health_topic", "health_checks_topic", "alerts_topic", "worker_id")
    own = settings.model_copy(update={name: f"{getattr(settings, name)}-alert-engine" for name in names})
    ensure_topics(own)
    return own


@pytest.fixture
async def project(settings):
    project_id, keys = await new_project(settings.postgres_dsn, "alerting", ("admin", "member", "viewer"))
    other_id, other = await new_project(settings.postgres_dsn, "alerting-other", ("member",))
    return {"id": project_id, **keys, "other": other["member"], "other_id": other_id}


def _h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _group() -> dict:
    # Each test's engines form their own consumer group, reading the session's topics from the start.
    return {"alerts_consumer_group": f"alerts-test-{uuid.uuid4().hex[:8]}"}


def produce(settings, topic: str, records: list, partitions: tuple[int | None, ...] = (None,)) -> None:
    producer = make_producer(settings)
    for record in records:
        value = record if isinstance(record, bytes) else orjson.dumps(record)
        for partition in partitions:
            extra = {} if partition is None else {"partition": partition}
            producer.produce(topic, key=b"k", value=value, **extra)
    assert producer.flush(15) == 0


def tag_change(project_id: str, session_id: str, tag: str, version: int = 3, previous: str = "success") -> dict:
    return {"project_id": project_id, "session_id": session_id, "version": version, "health_tag": tag,
            "previous_tag": previous, "at": datetime.now(UTC).isoformat()}


def check(project_id: str, server: str, status: str, at: datetime) -> dict:
    return {"check_id": uuid.uuid4().hex, "project_id": project_id, "server_id": uuid.uuid4().hex,
            "server_name": server, "transport": "streamable_http", "status": status, "checked_at": at.isoformat(),
            "latency_ms": None if status == "down" else 12.0, "error": "connection refused" if status == "down" else None}


async def eventually(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def add_rule(client, key: str, **rule) -> dict:
    answer = await client.post("/api/alerts/rules", headers=_h(key), json={"name": rule.get("kind"), **rule})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_a_tagged_session_fires_one_signed_webhook_across_two_engines_and_redelivery(
        topics, store, project, receiver):
    settings, hook = topics, receiver()
    overrides = {**FAST, **_group()}
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(client_for(settings, store, **overrides))
        second = await stack.enter_async_context(client_for(settings, store, **overrides))
        rule = await add_rule(first, project["member"], kind="session_tagged", tags=["loop_detected", "timeout"],
                              webhook_url=hook.url, secret=SECRET, cooldown_seconds=0)
        await add_rule(first, project["other"], kind="session_tagged", tags=["loop_detected"], webhook_url=hook.url)
        engines = [client._transport.app.state.alert_engine for client in (first, second)]
        await eventually(lambda: all(e.assigned.is_set() for e in engines), 30, "both engines to hold partitions")

        looping = tag_change(project["id"], "sess-loop", "loop_detected")
        # The same record on every partition, twice: each engine gets a copy (a redelivery).
        produce(settings, settings.health_topic, [looping, looping], partitions=(0, 1, 2))
        produce(settings, settings.health_topic, [tag_change(project["id"], "sess-ok", "success"),
                                                  b"not json", {"project_id": "nope", "health_tag": "timeout"}])
        await eventually(lambda: hook.requests, what="the webhook")
        await asyncio.sleep(1.5)  # many poll rounds of both engines
        assert hook.events() == [("fired", "session sess-loop tagged loop_detected")]

        sent = hook.requests[0]
        body, headers = sent["json"], {k.lower(): v for k, v in sent["headers"].items()}
        assert body["rule"] == {"id": rule["id"], "name": "session_tagged", "kind": "session_tagged"}
        assert body["project"]["id"] == project["id"]
        assert body["incident"]["state"] == "firing" and body["incident"]["details"]["session_id"] == "sess-loop"
        assert headers["idempotency-key"] == body["delivery_id"] == headers["x-spanstream-delivery"]
        expected = hmac.new(SECRET.encode(), headers["x-spanstream-timestamp"].encode() + b"." + sent["body"],
                            hashlib.sha256).hexdigest()
        assert headers["x-spanstream-signature"] == f"sha256={expected}"
        assert abs(int(headers["x-spanstream-timestamp"]) - time.time()) < 60

        listed = (await second.get("/api/alerts", headers=_h(project["viewer"]), params={"state": "firing"})).json()
        assert [a["id"] for a in listed["items"]] == [body["incident"]["id"]]
        alert_id = body["incident"]["id"]
        one = (await first.get(f"/api/alerts/{alert_id}", headers=_h(project["viewer"]))).json()
        assert [(d["event"], d["state"], d["attempts"], d["last_status"]) for d in one["deliveries"]] == [
            ("fired", "delivered", 1, 200)]

        # Another project's key sees no such incident; a viewer may not change it.
        assert (await first.get(f"/api/alerts/{alert_id}", headers=_h(project["other"]))).status_code == 404
        assert (await first.post(f"/api/alerts/{alert_id}/ack", headers=_h(project["other"]))).status_code == 404
        refused = await first.post(f"/api/alerts/{alert_id}/ack", headers=_h(project["viewer"]))
        assert refused.status_code == 403
        assert (await first.get("/api/alerts", headers=_h(project["other"]))).json()["items"] == []


async def test_failed_deliveries_are_retried_until_the_receiver_takes_them(topics, store, project, receiver):
    settings = topics
    flaky, refusing = receiver(fail_first=2, fail_status=500), receiver(fail_first=99, fail_status=400)
    async with client_for(settings, store, **FAST, **_group()) as client:
        await add_rule(client, project["member"], kind="session_tagged", tags=["timeout"], webhook_url=flaky.url,
                       cooldown_seconds=0)
        await add_rule(client, project["member"], kind="session_tagged", tags=["timeout"], webhook_url=refusing.url,
                       cooldown_seconds=0)
        produce(settings, settings.health_topic, [tag_change(project["id"], "sess-slow", "timeout")])

        await eventually(lambda: len(flaky.requests) == 3, what="two failures and a success")
        keys = {r["headers"]["Idempotency-Key"] for r in flaky.requests}
        assert len(keys) == 1  # one delivery, attempted three times
        assert len({r["body"] for r in flaky.requests}) == 1
        await asyncio.sleep(1.0)
        assert len(flaky.requests) == 3 and len(refusing.requests) == 1  # a 400 is not retried

        listed = (await client.get("/api/alerts", headers=_h(project["viewer"]))).json()["items"]
        outcomes = set()
        for alert in listed:
            one = (await client.get(f"/api/alerts/{alert['id']}", headers=_h(project["viewer"]))).json()
            outcomes |= {(d["state"], d["attempts"], d["last_status"]) for d in one["deliveries"]}
        assert outcomes == {("delivered", 3, 200), ("failed", 1, 400)}


async def test_a_pending_delivery_survives_a_restart(topics, store, project, receiver):
    settings, port = topics, free_port()  # nothing listens there yet: connection refused
    overrides = {**FAST, **_group(), "alerts_retry_base_seconds": 2.0}
    async with client_for(settings, store, **overrides) as client:
        await add_rule(client, project["member"], kind="session_tagged", tags=["tool_failure"],
                       webhook_url=f"http://127.0.0.1:{port}/hook", cooldown_seconds=0)
        produce(settings, settings.health_topic, [tag_change(project["id"], "sess-down", "tool_failure")])

        async def attempted():
            items = (await client.get("/api/alerts", headers=_h(project["viewer"]))).json()["items"]
            if not items:
                return None
            one = (await client.get(f"/api/alerts/{items[0]['id']}", headers=_h(project["viewer"]))).json()
            return one["deliveries"] and one["deliveries"][0]["attempts"] >= 1 and one["deliveries"][0]

        delivery = await eventually(attempted, what="a first, failed attempt")
        assert delivery["state"] == "pending" and delivery["last_status"] is None and delivery["last_error"]
    hook = receiver(port=port)
    async with client_for(settings, store, **overrides):  # a new process, the same database
        await eventually(lambda: hook.requests, what="the retried delivery")
        assert hook.requests[0]["json"]["delivery_id"] == delivery["id"]


async def test_acknowledging_or_snoozing_stops_the_repeats(topics, store, project, receiver):
    settings, hook = topics, receiver()
    async with client_for(settings, store, **{**FAST, **_group(), "alerts_repeat_seconds": 0.4}) as client:
        await add_rule(client, project["member"], kind="session_tagged", tags=["loop_detected"], webhook_url=hook.url,
                       cooldown_seconds=0)
        produce(settings, settings.health_topic, [tag_change(project["id"], "sess-a", "loop_detected"),
                                                  tag_change(project["id"], "sess-b", "loop_detected")])

        def sent(session: str, event: str | None = None) -> int:
            return sum(1 for e, summary in hook.events() if f" {session} " in summary and (event is None or e == event))

        await eventually(lambda: sent("sess-a", "repeated") >= 1 and sent("sess-b", "repeated") >= 1, what="repeats")
        items = (await client.get("/api/alerts", headers=_h(project["viewer"]))).json()["items"]
        ids = {a["details"]["session_id"]: a["id"] for a in items}

        acked = await client.post(f"/api/alerts/{ids['sess-a']}/ack", headers=_h(project["member"]))
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "acknowledged" and acked.json()["acknowledged_by"].startswith("key:")
        until = datetime.now(UTC) + timedelta(seconds=2.5)
        snoozed = await client.post(f"/api/alerts/{ids['sess-b']}/snooze", headers=_h(project["member"]),
                                    json={"until": until.isoformat()})
        assert snoozed.status_code == 200 and snoozed.json()["state"] == "snoozed"
        await asyncio.sleep(0.3)  # a send already under way may still land
        a_count, b_count = sent("sess-a"), sent("sess-b")
        await asyncio.sleep(1.5)
        assert (sent("sess-a"), sent("sess-b")) == (a_count, b_count)

        # The snooze ends: it fires again, and keeps repeating until someone acts.
        await eventually(lambda: sent("sess-b") > b_count, what="the snoozed incident to come back")
        assert datetime.now(UTC) >= until
        back = (await client.get(f"/api/alerts/{ids['sess-b']}", headers=_h(project["viewer"]))).json()
        assert back["state"] == "firing"
        assert sent("sess-a") == a_count

        resolved = await client.post(f"/api/alerts/{ids['sess-b']}/resolve", headers=_h(project["member"]))
        assert resolved.json()["state"] == "resolved"
        await eventually(lambda: sent("sess-b", "resolved") == 1, what="the resolved webhook")
        again = await client.post(f"/api/alerts/{ids['sess-b']}/snooze", headers=_h(project["member"]),
                                  json={"minutes": 5})
        assert again.status_code == 409
        bad = await client.post(f"/api/alerts/{ids['sess-a']}/snooze", headers=_h(project["member"]),
                                json={"minutes": 5, "until": until.isoformat()})
        assert bad.status_code == 422 and "exactly one" in bad.text
        past = await client.post(f"/api/alerts/{ids['sess-a']}/snooze", headers=_h(project["member"]),
                                 json={"until": "2020-01-01T00:00:00Z"})
        assert past.status_code == 422 and "past" in past.text

        audit = (await client.get("/api/audit/logs", headers=_h(project["admin"]))).json()["items"]
        actions = [(e["action"], e["target"]) for e in audit if e["action"].startswith("alert.")]
        assert actions == [("alert.resolved", f"alert:{ids['sess-b']}"), ("alert.snoozed", f"alert:{ids['sess-b']}"),
                           ("alert.acknowledged", f"alert:{ids['sess-a']}")]
        firing = (await client.get("/api/alerts", headers=_h(project["viewer"]),
                                   params=[("state", "acknowledged"), ("state", "resolved")])).json()["items"]
        assert {a["id"] for a in firing} == set(ids.values())


async def test_a_rule_fires_at_most_once_per_cooldown(topics, store, project, receiver):
    settings, hook = topics, receiver()
    async with client_for(settings, store, **FAST, **_group()) as client:
        await add_rule(client, project["member"], kind="session_tagged", tags=["tool_failure"], webhook_url=hook.url,
                       cooldown_seconds=300)
        produce(settings, settings.health_topic, [tag_change(project["id"], f"sess-{n}", "tool_failure") for n in range(3)])
        items = await eventually(lambda: _items(client, project, 3), what="three incidents")
        await asyncio.sleep(0.5)
        assert len(hook.requests) == 1
        assert sorted(a["notified"] for a in items) == [False, False, True]

        first = (await client.get("/api/alerts", headers=_h(project["viewer"]), params={"limit": 2})).json()
        rest = (await client.get("/api/alerts", headers=_h(project["viewer"]),
                                 params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [a["id"] for a in first["items"] + rest["items"]] == [a["id"] for a in items]
        assert rest["next_cursor"] is None
        bad = await client.get("/api/alerts", headers=_h(project["viewer"]), params={"cursor": "garbage"})
        assert bad.status_code == 400 and "cursor" in bad.text
        assert (await client.get("/api/alerts", headers=_h(project["viewer"]),
                                 params={"state": "open"})).status_code == 422


async def test_a_session_incident_resolves_itself_when_the_session_loses_the_tag(topics, store, project, receiver):
    settings, hook = topics, receiver()
    async with client_for(settings, store, **FAST, **_group()) as client:
        await add_rule(client, project["member"], kind="session_tagged", tags=["tool_failure", "timeout"],
                       webhook_url=hook.url, cooldown_seconds=0)
        pid = project["id"]
        produce(settings, settings.health_topic, [tag_change(pid, "retried", "tool_failure", 2),
                                                  tag_change(pid, "still-failing", "tool_failure", 2)])
        await eventually(lambda: len(hook.requests) == 2, what="two fired webhooks")
        # The retry succeeded: the session is success_with_fallback now. The other moves from one
        # watched tag to another: its first incident is over, and a new one fires.
        produce(settings, settings.health_topic, [
            tag_change(pid, "retried", "success_with_fallback", 3, previous="tool_failure"),
            tag_change(pid, "still-failing", "timeout", 3, previous="tool_failure")])
        await eventually(lambda: len(hook.requests) == 5, what="two resolved and one fired webhook")
        assert sorted(hook.events()) == sorted([
            ("fired", "session retried tagged tool_failure"), ("fired", "session still-failing tagged tool_failure"),
            ("resolved", "session retried tagged tool_failure"), ("resolved", "session still-failing tagged tool_failure"),
            ("fired", "session still-failing tagged timeout")])
        firing = (await client.get("/api/alerts", headers=_h(project["viewer"]), params={"state": "firing"})).json()
        assert [a["summary"] for a in firing["items"]] == ["session still-failing tagged timeout"]


async def _items(client, project, count: int):
    items = (await client.get("/api/alerts", headers=_h(project["viewer"]))).json()["items"]
    return items if len(items) == count else None


async def test_a_server_going_down_fires_and_its_recovery_resolves(topics, store, project, receiver):
    settings, hook = topics, receiver()
    t0 = datetime.now(UTC)
    async with client_for(settings, store, **FAST, **_group()) as client:
        await add_rule(client, project["member"], kind="mcp_server_down", server_name="jira-mcp", webhook_url=hook.url,
                       cooldown_seconds=0)
        await add_rule(client, project["member"], kind="mcp_server_recovered", webhook_url=hook.url, cooldown_seconds=0)
        pid, topic = project["id"], settings.health_checks_topic
        down = check(pid, "jira-mcp", "down", t0)
        produce(settings, topic, [check(pid, "jira-mcp", "up", t0 - timedelta(minutes=1)), down,
                                  check(pid, "docs-mcp", "down", t0), {"project_id": pid, "server_name": "x"}, b"\xff"])
        await eventually(lambda: hook.requests, what="the down webhook")
        # Still down, a redelivery, and an old check overtaken by newer ones: nothing new.
        produce(settings, topic, [check(pid, "jira-mcp", "down", t0 + timedelta(seconds=30)), down])
        await asyncio.sleep(1.0)
        assert hook.events() == [("fired", "MCP server jira-mcp is down")]

        produce(settings, topic, [check(pid, "jira-mcp", "degraded", t0 + timedelta(seconds=60))])
        await eventually(lambda: len(hook.requests) == 3, what="resolved and recovered")
        assert sorted(hook.events()) == sorted([
            ("fired", "MCP server jira-mcp is down"), ("resolved", "MCP server jira-mcp is down"),
            ("fired", "MCP server jira-mcp recovered (degraded)")])
        resolved = next(r["json"] for r in hook.requests if r["json"]["event"] == "resolved")
        assert resolved["incident"]["resolved_by"] == "auto" and resolved["incident"]["state"] == "resolved"
        # docs-mcp went down too: watched by the recovered rule (any server) only, which waits for it to answer.
        assert (await client.get("/api/alerts", headers=_h(project["viewer"]),
                                 params={"state": "firing"})).json()["items"] == []


async def test_slo_and_cost_budget_rules_fire_and_resolve_on_their_own(topics, store, project, receiver):
    settings, hook = topics, receiver()
    pid = project["id"]
    seed_spans(store, [tool_call(pid, "s-slow", NOW - timedelta(minutes=1), 900.0 + n, agent_name="planner")
                       for n in range(20)])
    seed_cost(store, pid, "s-slow", NOW, 3_000_000_000)  # 3 USD this hour
    async with client_for(settings, store, **FAST, **_group()) as client:
        slo = (await client.post("/api/slos", headers=_h(project["member"]), json={
            "name": "planner is fast", "kind": "p99_latency", "agent_name": "planner", "target": 500,
            "window_hours": 1})).json()
        await add_rule(client, project["member"], kind="slo_breached", slo_id=slo["id"], webhook_url=hook.url,
                       cooldown_seconds=0)
        budget = await add_rule(client, project["member"], kind="cost_budget_crossed", budget_usd="2",
                                window_hours=2, webhook_url=hook.url, cooldown_seconds=0)
        await eventually(lambda: len(hook.requests) == 2, what="the breach and the budget webhooks")
        summaries = sorted(s for _, s in hook.events())
        assert summaries[0].startswith("SLO planner is fast breached") and "target 500" in summaries[0]
        assert summaries[1].startswith("cost over the last 2.0 h is 3.000000 USD, budget 2.0 USD")
        await asyncio.sleep(1.0)  # evaluated again and again: still one of each
        assert len(hook.requests) == 2

        # The SLO is loosened and the budget raised: both conditions clear, each resolves itself.
        await client.put(f"/api/slos/{slo['id']}", headers=_h(project["member"]), json={
            "name": "planner is fast", "kind": "p99_latency", "agent_name": "planner", "target": 5000,
            "window_hours": 1})
        await client.put(f"/api/alerts/rules/{budget['id']}", headers=_h(project["member"]), json={
            "name": "budget", "kind": "cost_budget_crossed", "budget_usd": "10", "window_hours": 2,
            "webhook_url": hook.url, "cooldown_seconds": 0})
        await eventually(lambda: len(hook.requests) == 4, what="two resolved webhooks")
        assert sorted(e for e, _ in hook.events()) == ["fired", "fired", "resolved", "resolved"]
        items = (await client.get("/api/alerts", headers=_h(project["viewer"]))).json()["items"]
        assert {(a["kind"], a["state"], a["resolved_by"]) for a in items} == {
            ("slo_breached", "resolved", "auto"), ("cost_budget_crossed", "resolved", "auto")}


async def test_state_changes_are_published_to_the_alerts_topic(topics, store, project, receiver):
    from confluent_kafka import Consumer, TopicPartition

    settings, hook = topics, receiver()
    async with client_for(settings, store, **FAST, **_group()) as client:
        await add_rule(client, project["member"], kind="session_tagged", tags=["timeout"], webhook_url=hook.url,
                       cooldown_seconds=0)
        produce(settings, settings.health_topic, [tag_change(project["id"], "sess-feed", "timeout")])
        await eventually(lambda: hook.requests, what="the webhook")
        alert_id = hook.requests[0]["json"]["incident"]["id"]
        assert (await client.post(f"/api/alerts/{alert_id}/ack", headers=_h(project["member"]))).status_code == 200
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.alerts_topic, p, 0) for p in range(settings.spans_partitions)])
    seen, deadline = [], time.monotonic() + 20
    while time.monotonic() < deadline and len(seen) < 2:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            record = orjson.loads(message.value())
            if record["alert_id"] == alert_id:
                seen.append(record)
    consumer.close()
    assert [(r["event"], r["state"], r["project_id"]) for r in seen] == [
        ("fired", "firing", project["id"]), ("acknowledged", "acknowledged", project["id"])]
    assert seen[1]["actor"].startswith("key:")


async def test_a_snoozed_rule_records_incidents_and_sends_them_when_it_wakes(topics, store, project, receiver):
    settings, hook = topics, receiver()
    async with client_for(settings, store, **FAST, **_group()) as client:
        rule = await add_rule(client, project["member"], kind="session_tagged", tags=["schema_drift"],
                              webhook_url=hook.url, cooldown_seconds=0)
        url = f"/api/alerts/rules/{rule['id']}/snooze"
        assert (await client.post(url, headers=_h(project["viewer"]), json={"minutes": 5})).status_code == 403
        assert (await client.post(url, headers=_h(project["other"]), json={"minutes": 5})).status_code == 404
        snoozed = await client.post(url, headers=_h(project["member"]), json={"minutes": 60})
        assert snoozed.status_code == 200, snoozed.text
        produce(settings, settings.health_topic, [tag_change(project["id"], "sess-drift", "schema_drift")])
        [incident] = await eventually(lambda: _items(client, project, 1), what="the incident")
        assert incident["notified"] is False and incident["state"] == "firing"
        await asyncio.sleep(1.0)
        assert hook.requests == []

        # Waking the rule early sends what waited for it, once.
        assert (await client.delete(url, headers=_h(project["member"]))).status_code == 204
        await eventually(lambda: hook.requests, what="the webhook after the rule woke")
        await asyncio.sleep(0.5)
        assert hook.events() == [("fired", "session sess-drift tagged schema_drift")]
        assert (await client.delete(url, headers=_h(project["member"]))).status_code == 404
        audit = (await client.get("/api/audit/logs", headers=_h(project["admin"]))).json()["items"]
        assert [e["action"] for e in audit if e["action"].startswith("alert_rule.")][:2] == [
            "alert_rule.unsnoozed", "alert_rule.snoozed"]
