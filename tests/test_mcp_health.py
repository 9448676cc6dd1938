"""MCP server health checks end to end: real MCP servers (the SDK's own, tests/mcp_test_server.py)
probed by the prober inside a real `spanstream serve`, through `health.checks`, the sink and
ClickHouse, read back from the API as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from confluent_kafka import Consumer

from api.repositories.mcp_servers import create_server
from api.repositories.projects import create_api_key, ensure_project
from api.routers.mcp_servers import ServerIn
from schemas.health_check import HealthCheck, check_key, tool_fingerprints, tools_hash
from spanstream.kafka import ensure_topics
from spanstream.producer import make_producer
from spanstream.prober import ShardLocks
from tests.conftest import free_port
from tests.metadata import api as metadata_api
from tests.processes import start_spanstream
from tests.test_kafka import consume

SERVER_SCRIPT = str(Path(__file__).with_name("mcp_test_server.py"))
# Every stdio probe starts a Python process that imports the SDK: seconds on a loaded machine.
STDIO_TIMEOUT = 30
SLOW_OK_MS = 120_000  # no test here is about `degraded`: judge() is tested on plain values


class TopicReader:
    """Everything published to a topic from now on, as JSON records."""

    def __init__(self, settings, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                                   "auto.offset.reset": "earliest"})
        self._consumer.subscribe([topic])
        self.records: list[dict] = []

    def poll(self, seconds: float = 0.5) -> list[dict]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.records.append(json.loads(message.value()))
        return self.records

    def close(self) -> None:
        self._consumer.close()


def _start_prober(settings, topic: str, log: Path, **env: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "spanstream.cli", "probe"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn, "SPANSTREAM_HEALTH_CHECKS_TOPIC": topic,
                 "SPANSTREAM_SPANS_TOPIC": f"{settings.spans_topic}-probe", "SPANSTREAM_PROBE_REFRESH_SECONDS": "0.5",
                 **env})


def test_spanstream_probe_alone_and_a_standby_that_takes_over(settings, tmp_path):
    """Runs before the module's `serve` starts, so these two probers are the only ones."""
    project_id, _ = asyncio.run(_project_keys(settings.postgres_dsn))
    port = free_port()
    server = subprocess.Popen([sys.executable, SERVER_SCRIPT, "http", "--port", str(port), "--tools",
                               str(_tools_file(tmp_path, [{"name": "ping", "params": []}]))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    topic = f"{settings.health_checks_topic}-alone-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.model_copy(update={"health_checks_topic": topic}))
    reader = TopicReader(settings, topic)
    first = second = None
    try:
        _wait("the MCP server listening", lambda: _listening(port), timeout=60)
        asyncio.run(_insert_server(settings.postgres_dsn, project_id, {
            "name": "alone", "transport": "streamable_http", "url": f"http://127.0.0.1:{port}/mcp",
            "interval_seconds": 1, "timeout_seconds": 5}))
        metrics_port = free_port()
        first = _start_prober(settings, topic, tmp_path / "first.log", SPANSTREAM_METRICS_PORT=str(metrics_port))
        mine = lambda: [r for r in reader.poll() if r["project_id"] == project_id]  # noqa: E731
        _wait("a check from the first prober", lambda: [r for r in mine() if r["prober"].endswith(f":{first.pid}")])
        # A prober on its own shows its checks to Prometheus, by project and server.
        counted = f'spanstream_health_checks_total{{project="{project_id}",server="alone",status="up"}}'
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert any(line.startswith(counted) and float(line.split()[-1]) >= 1 for line in metrics.splitlines()), metrics[-2000:]
        second = _start_prober(settings, topic, tmp_path / "second.log")
        time.sleep(8)  # the second prober started and found the shard taken
        seen = len(mine())
        assert {r["prober"] for r in mine()} == {r["prober"] for r in mine() if r["prober"].endswith(f":{first.pid}")}
        assert all(r["status"] == "up" and r["server_name"] == "alone" for r in mine())

        first.kill()  # SIGKILL: its PostgreSQL connection, and the lock, go with it
        first.wait()
        _wait("the standby probing", lambda: [r for r in mine()[seen:] if r["prober"].endswith(f":{second.pid}")])
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        for process in (first, second, server):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        reader.close()
        asyncio.run(_delete_servers(settings.postgres_dsn, project_id))


async def _insert_server(dsn: str, project_id: str, fields: dict) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await create_server(pool, uuid.UUID(project_id), {**ServerIn(**fields).model_dump()})
    finally:
        await pool.close()


async def _delete_servers(dsn: str, project_id: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DELETE FROM mcp_servers WHERE project_id = $1", uuid.UUID(project_id))
    finally:
        await connection.close()


def _start_serve(settings, data_dir: Path, suffix: str, **env: str):
    """`spanstream serve` with its own chdb, topics and group (no fold workers: no spans here)."""
    topic = f"{settings.health_checks_topic}-{suffix}"
    events_topic = f"{settings.health_check_events_topic}-{suffix}"
    port = free_port()
    running = start_spanstream("serve", {
        "SPANSTREAM_DATA_DIR": str(data_dir),
        "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
        "SPANSTREAM_SPANS_TOPIC": f"{settings.spans_topic}-{suffix}",
        "SPANSTREAM_SESSIONS_TOPIC": f"{settings.sessions_topic}-{suffix}",
        "SPANSTREAM_HEALTH_TOPIC": f"{settings.health_topic}-{suffix}",
        "SPANSTREAM_HEALTH_CHECKS_TOPIC": topic,
        "SPANSTREAM_HEALTH_CHECK_EVENTS_TOPIC": events_topic,
        "SPANSTREAM_WORKER_ID": f"{settings.worker_id}-{suffix}",
        "SPANSTREAM_SPANS_PARTITIONS": str(settings.spans_partitions),
        "SPANSTREAM_API_PORT": str(port),
        "SPANSTREAM_FOLD_PROCESSES": "0",
        "SPANSTREAM_SINK_BATCH_SECONDS": "0.2",
        "SPANSTREAM_PROBE_REFRESH_SECONDS": "0.5",
        "SPANSTREAM_PROBE_STDIO": "true",
        **env,
    }, port, data_dir / "serve.log")
    return running, {"base": running.base, "topic": topic, "events_topic": events_topic, "log": running.log}


@pytest.fixture(scope="module")
def serve(settings, tmp_path_factory):
    running, serve = _start_serve(settings, tmp_path_factory.mktemp("mcp-serve"), uuid.uuid4().hex[:6])
    yield serve
    assert running.stop() == 0, running.log.read_text()[-3000:]


async def _project_keys(dsn: str) -> tuple[str, dict[str, str]]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        project = await ensure_project(pool, f"mcp-{uuid.uuid4().hex[:8]}")
        keys = {role: await create_api_key(pool, project.id, role, role) for role in ("admin", "member", "viewer")}
        return str(project.id), keys
    finally:
        await pool.close()


@pytest.fixture
def project(settings):
    project_id, keys = asyncio.run(_project_keys(settings.postgres_dsn))
    yield {"id": project_id, "keys": keys, "admin": {"X-API-Key": keys["admin"]}}
    # Servers left registered would go on being probed through the next tests.
    asyncio.run(_delete_servers(settings.postgres_dsn, project_id))


def _tools_file(tmp_path: Path, tools: list[dict]) -> Path:
    path = tmp_path / f"tools-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(tools))
    return path


def _stdio(name: str, tools_file: Path, *extra: str, **fields) -> dict:
    return {"name": name, "transport": "stdio", "command": sys.executable,
            "args": [SERVER_SCRIPT, "stdio", "--tools", str(tools_file), *extra],
            "interval_seconds": 2, "timeout_seconds": STDIO_TIMEOUT, "degraded_after_ms": SLOW_OK_MS, **fields}


def _register(serve, project, body: dict) -> dict:
    response = httpx.post(f"{serve['base']}/api/mcp/servers", json=body, headers=project["admin"])
    assert response.status_code == 201, response.text
    return response.json()


def _server(serve, project, name: str) -> dict:
    response = httpx.get(f"{serve['base']}/api/mcp/servers/{name}", headers=project["admin"])
    assert response.status_code == 200, response.text
    return response.json()


def _wait(what: str, probe, timeout: float = 90.0, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log else ""
    pytest.fail(f"{what} did not happen within {timeout:g} s\n{tail}")


def _checks(serve, project, name: str, **params) -> dict:
    response = httpx.get(f"{serve['base']}/api/mcp/servers/{name}/checks", params=params, headers=project["admin"])
    assert response.status_code == 200, response.text
    return response.json()


def _events(serve, project, name: str, **params) -> list[dict]:
    response = httpx.get(f"{serve['base']}/api/mcp/servers/{name}/events", params=params, headers=project["admin"])
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _latest_is(serve, project, name: str, status: str):
    def check():
        latest = _server(serve, project, name)["latest"]
        return latest if latest and latest["status"] == status else None
    return check


def test_a_stdio_server_is_up_with_its_tools_and_history(settings, serve, project, tmp_path):
    tools = [{"name": "search", "description": "Search the docs", "params": ["query"]},
             {"name": "fetch", "params": ["url"]}]
    _register(serve, project, _stdio("docs", _tools_file(tmp_path, tools)))

    latest = _wait("docs up", _latest_is(serve, project, "docs", "up"), log=serve["log"])
    assert latest["tool_count"] == 2 and latest["error"] == "" and latest["latency_ms"] > 0
    listed = httpx.get(f"{serve['base']}/api/mcp/servers", headers={"X-API-Key": project["keys"]["viewer"]}).json()
    assert [(item["name"], item["latest"]["status"]) for item in listed["items"]] == [("docs", "up")]

    page = _wait("two checks", lambda: (p := _checks(serve, project, "docs")) and len(p["items"]) >= 2 and p)
    newest = page["items"][0]
    assert newest["status"] == "up" and sorted(newest["tool_names"]) == ["fetch", "search"]
    assert newest["checked_at"] > page["items"][1]["checked_at"]
    assert newest["protocol_version"] and newest["transport"] == "stdio"

    # Paging one check at a time walks the same history, newest first, each check once.
    seen, cursor = [], None
    for _ in range(len(page["items"])):
        one = _checks(serve, project, "docs", limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [item["check_id"] for item in one["items"]]
        cursor = one["next_cursor"]
        if cursor is None:
            break
    assert seen[:len(page["items"])] == [item["check_id"] for item in page["items"]][:len(seen)]
    assert len(seen) == len(set(seen)) >= 2

    # The records on health.checks carry what the live feed relays.
    records = [json.loads(m.value()) for m in consume(settings, serve["topic"], 50, timeout=5)]
    mine = [r for r in records if r["project_id"] == project["id"] and r["server_name"] == "docs"]
    assert mine, "no check of this server on the health.checks topic"
    assert {"project_id", "server_name", "status", "latency_ms", "checked_at", "tools_hash"} <= set(mine[0])
    assert {m.key() for m in consume(settings, serve["topic"], 50, timeout=2)
            if json.loads(m.value())["project_id"] == project["id"]} == {f"{project['id']}/docs".encode()}
    assert newest["tools_hash"] in {r["tools_hash"] for r in mine}

    # Prometheus counts them by server and status (infra/prometheus/alerts.yml pages on down).
    metrics = httpx.get(f"{serve['base']}/metrics").text
    counted = [line for line in metrics.splitlines()
               if line.startswith("spanstream_health_checks_total{") and 'server="docs"' in line and 'status="up"' in line]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 2, metrics[-2000:]


def test_changed_tools_are_a_schema_drift_event(serve, project, tmp_path):
    before = [{"name": "search", "description": "Search the docs", "params": ["query"]},
              {"name": "fetch", "params": ["url"]}]
    tools_file = _tools_file(tmp_path, before)
    _register(serve, project, _stdio("drifting", tools_file))
    first = _wait("drifting up", _latest_is(serve, project, "drifting", "up"), log=serve["log"])

    # Each stdio probe starts the server afresh, so the next one sees the new tools.
    tools_file.write_text(json.dumps([
        {"name": "search", "description": "Search the docs", "params": ["query", "limit"]},
        {"name": "write", "params": ["path", "text"]},
    ]))
    [drift] = _wait("a drift event", lambda: _events(serve, project, "drifting", kind="schema_drift"),
                    log=serve["log"])
    assert drift["old_hash"] == first["tools_hash"] and drift["new_hash"] != first["tools_hash"]
    assert (drift["tools_added"], drift["tools_removed"], drift["tools_changed"]) == (["write"], ["fetch"], ["search"])
    latest = _server(serve, project, "drifting")["latest"]
    assert latest["tools_hash"] == drift["new_hash"] and latest["status"] == "up"
    time.sleep(5)  # more checks with the new tools: no further drift
    assert len(_events(serve, project, "drifting", kind="schema_drift")) == 1


def test_a_server_that_dies_goes_down_and_recovers_when_restarted(settings, serve, project, tmp_path):
    tools_file = _tools_file(tmp_path, [{"name": "ping", "params": []}])
    port = free_port()

    def start() -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, SERVER_SCRIPT, "http", "--port", str(port), "--tools", str(tools_file)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait("the MCP server listening", lambda: _listening(port), timeout=60)
        return process

    process = start()
    try:
        _register(serve, project, {"name": "remote", "transport": "streamable_http", "url": f"http://127.0.0.1:{port}/mcp",
                                   "interval_seconds": 1, "timeout_seconds": 5, "degraded_after_ms": SLOW_OK_MS})
        _wait("remote up", _latest_is(serve, project, "remote", "up"), log=serve["log"])
        process.kill()
        process.wait()
        down = _wait("remote down", _latest_is(serve, project, "remote", "down"), log=serve["log"])
        assert "initialize" in down["error"] and down["tool_count"] is None
        process = start()
        _wait("remote up again", _latest_is(serve, project, "remote", "up"), log=serve["log"])
        kinds = [event["kind"] for event in reversed(_events(serve, project, "remote"))]
        # A probe in flight at the kill may see initialize answered and tools/list fail: degraded first.
        assert kinds[-2:] == ["down", "recovered"] and set(kinds[:-2]) <= {"degraded"}, kinds
        # The same events, for alerting, on health.checks.events.
        published = [json.loads(m.value()) for m in consume(settings, serve["events_topic"], 100, timeout=5)]
        mine = [e for e in published if e["project_id"] == project["id"] and e["server_name"] == "remote"]
        assert [e["kind"] for e in mine][-2:] == ["down", "recovered"], mine
        assert mine[-1]["previous_status"] == "down" and mine[-1]["status"] == "up"
        assert _checks(serve, project, "remote", status="down")["items"], "the down checks are in the history"
    finally:
        httpx.delete(f"{serve['base']}/api/mcp/servers/remote", headers=project["admin"])
        process.kill()
        process.wait()


def _listening(port: int) -> bool:
    try:
        return httpx.post(f"http://127.0.0.1:{port}/mcp", timeout=1).status_code > 0
    except httpx.HTTPError:
        return False


def _children_running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_hanging_server_times_out_as_down_and_the_prober_keeps_going(serve, project, tmp_path):
    tools = _tools_file(tmp_path, [{"name": "ping", "params": []}])
    _register(serve, project, _stdio("hangs", tools, "--hang", timeout_seconds=4))
    _register(serve, project, _stdio("steady", _tools_file(tmp_path, [{"name": "ping", "params": []}])))
    down = _wait("hangs down", _latest_is(serve, project, "hangs", "down"), log=serve["log"])
    assert "no answer to initialize within 4 s" in down["error"]
    _wait("a second timed-out check", lambda: len(_checks(serve, project, "hangs", status="down")["items"]) >= 2)
    steady = len(_checks(serve, project, "steady")["items"])
    _wait("steady checked meanwhile", lambda: len(_checks(serve, project, "steady")["items"]) > steady)
    # The timed-out children were killed: at most the one being probed now is alive.
    assert len(_children_running(str(tools))) <= 1
    httpx.delete(f"{serve['base']}/api/mcp/servers/hangs", headers=project["admin"])
    _wait("the hung children gone", lambda: not _children_running(str(tools)), timeout=30)


def test_bad_registrations_are_refused_with_the_reason(settings, serve, project, tmp_path):
    base, admin = f"{serve['base']}/api/mcp/servers", project["admin"]
    cases = [
        ({"name": "x", "transport": "stdio"}, 422, "needs a command"),
        ({"name": "x", "transport": "sse", "url": "ftp://host/sse"}, 422, "http:// or https://"),
        ({"name": "x", "transport": "streamable_http", "url": "http://h/mcp", "command": "ls"}, 422, "not command"),
        ({"name": "bad name!", "transport": "sse", "url": "http://h/sse"}, 422, "name"),
        ({"name": "x", "transport": "sse", "url": "http://h/sse", "timeout_seconds": 0}, 422, "timeout_seconds"),
        ({"name": "x", "transport": "sse", "url": "http://h/sse", "headers": {"A": "b\r\nc"}}, 422, "line breaks"),
        ({"name": "x", "transport": "websocket", "url": "http://h"}, 422, "transport"),
    ]
    for body, code, reason in cases:
        response = httpx.post(base, json=body, headers=admin)
        assert response.status_code == code and reason in response.text, (body, response.text)

    remote = {"name": "r", "transport": "sse", "url": "http://127.0.0.1:9/sse", "headers": {"Authorization": "Bearer s3cret"},
              "interval_seconds": 3600}
    created = httpx.post(base, json=remote, headers={"X-API-Key": project["keys"]["member"]})
    assert created.status_code == 201 and created.json()["headers"] == {"Authorization": "***"}
    assert "s3cret" not in httpx.get(base, headers=admin).text
    assert httpx.post(base, json=remote, headers=admin).status_code == 409
    viewer = httpx.post(base, json={**remote, "name": "v"}, headers={"X-API-Key": project["keys"]["viewer"]})
    assert viewer.status_code == 403
    stdio = httpx.post(base, json=_stdio("s", tmp_path / "none.json"), headers={"X-API-Key": project["keys"]["member"]})
    assert stdio.status_code == 403 and "admin" in stdio.text

    patched = httpx.patch(f"{base}/r", json={"interval_seconds": 0.5}, headers=admin)
    assert patched.status_code == 422 and "interval_seconds" in patched.text
    moved = httpx.patch(f"{base}/r", json={"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}, headers=admin)
    assert moved.status_code == 200 and moved.json()["transport"] == "streamable_http"
    assert moved.json()["headers"] == {}
    assert httpx.patch(f"{base}/nope", json={"enabled": False}, headers=admin).status_code == 404
    assert httpx.get(f"{base}/r/checks", params={"cursor": "garbage"}, headers=admin).status_code == 400
    assert httpx.get(f"{base}/nope/checks", headers=admin).status_code == 404
    other = asyncio.run(_project_keys(settings.postgres_dsn))[1]["admin"]
    assert httpx.get(f"{base}/r", headers={"X-API-Key": other}).status_code == 404
    assert httpx.delete(f"{base}/r", headers=admin).status_code == 204
    assert httpx.get(f"{base}/r", headers=admin).status_code == 404


def test_one_prober_per_shard_and_a_standby_takes_over(settings):
    topic = f"probe-locks-{uuid.uuid4().hex[:6]}"

    async def scenario():
        first = ShardLocks(settings.postgres_dsn, topic, shards=2, only=None)
        second = ShardLocks(settings.postgres_dsn, topic, shards=2, only=None)
        elsewhere = ShardLocks(settings.postgres_dsn, topic + "-other", shards=2, only=None)
        try:
            assert await first.refresh() == {0, 1}
            assert await second.refresh() == set()
            assert await elsewhere.refresh() == {0, 1}  # another deployment's topic, its own locks
            await first.close()  # the prober died: its connection and locks are gone
            assert await second.refresh() == {0, 1}
        finally:
            for locks in (first, second, elsewhere):
                await locks.close()

    asyncio.run(scenario())


def _http_server(mode: str, tools_file: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, SERVER_SCRIPT, mode, "--port", str(port), "--tools", str(tools_file), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


def test_an_sse_server_is_up_and_one_failing_tools_list_is_degraded(serve, project, tmp_path):
    tools = _tools_file(tmp_path, [{"name": "ping", "params": []}])
    sse, sse_port = _http_server("sse", tools)
    broken, broken_port = _http_server("http", tools, "--tools-fail")
    try:
        _wait("both MCP servers listening", lambda: _listening(broken_port) and _sse_listening(sse_port), timeout=60)
        _register(serve, project, {"name": "events", "transport": "sse", "url": f"http://127.0.0.1:{sse_port}/sse",
                                   "interval_seconds": 2, "timeout_seconds": 5, "degraded_after_ms": SLOW_OK_MS})
        _register(serve, project, {"name": "no-tools", "transport": "streamable_http",
                                   "url": f"http://127.0.0.1:{broken_port}/mcp", "interval_seconds": 2,
                                   "timeout_seconds": 5, "degraded_after_ms": SLOW_OK_MS})
        up = _wait("the SSE server up", _latest_is(serve, project, "events", "up"), log=serve["log"])
        assert up["tool_count"] == 1
        degraded = _wait("no-tools degraded", _latest_is(serve, project, "no-tools", "degraded"), log=serve["log"])
        assert "tools/list failed" in degraded["error"] and "tool registry is unavailable" in degraded["error"]
        assert degraded["tool_count"] is None
        [check] = _checks(serve, project, "no-tools", limit=1)["items"]
        assert check["initialize_ms"] > 0 and check["server_version"] == "1.2.3"
    finally:
        for process in (sse, broken):
            process.kill()
            process.wait()


def _sse_listening(port: int) -> bool:
    try:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/sse", timeout=1) as response:
            return response.status_code == 200
    except httpx.HTTPError:
        return False


def _crafted(project, server: str, t0: datetime, n: int, tools: list[dict] | None) -> HealthCheck:
    """A check as a prober would publish it: up with these tools, or down (None)."""
    return HealthCheck(
        check_id=f"{project['id']}-{server}-{n}", project_id=project["id"], server_id="", server_name=server,
        transport="sse", status="up" if tools else "down", checked_at=(t0 + timedelta(minutes=n)).isoformat(),
        latency_ms=5.0 if tools else None, tool_count=len(tools) if tools else None,
        tools_hash=tools_hash(tools) if tools else None, tools=tool_fingerprints(tools) if tools else [],
        error=None if tools else "no answer to initialize within 10 s")


def _publish(settings, topic: str, checks: list[HealthCheck]) -> None:
    producer = make_producer(settings)
    for item in checks:
        producer.produce(topic, key=check_key(item.project_id, item.server_name), value=json.dumps(item.to_record()).encode())
    assert producer.flush(10) == 0


def test_redelivered_and_late_checks_are_written_once(settings, serve, project):
    """Checks published as a prober (or a replay) would: a duplicate, a late one, a drift, an outage."""
    _register(serve, project, {"name": "replayed", "transport": "sse", "url": "http://127.0.0.1:9/sse",
                               "enabled": False})  # disabled: only these records, no probes
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    before = [{"name": "search", "inputSchema": {"type": "object"}}]
    after = [{"name": "search", "inputSchema": {"type": "object"}}, {"name": "write", "inputSchema": {}}]
    c1, c2 = _crafted(project, "replayed", t0, 1, before), _crafted(project, "replayed", t0, 2, after)
    c3 = _crafted(project, "replayed", t0, 3, None)
    _publish(settings, serve["topic"], [c1, c2, c2, c1, c3, c3])

    latest = _wait("the outage", _latest_is(serve, project, "replayed", "down"), log=serve["log"])
    assert latest["check_id"] == c3.check_id and latest["last_up_at"].startswith(c2.checked_at[:19])
    time.sleep(2)  # time for a wrongly duplicated row to show up
    assert [c["check_id"] for c in _checks(serve, project, "replayed")["items"]] == [c3.check_id, c2.check_id, c1.check_id]
    events = _events(serve, project, "replayed")
    assert [(e["kind"], e["check_id"]) for e in events] == [("down", c3.check_id), ("schema_drift", c2.check_id)]
    assert events[1]["tools_added"] == ["write"] and events[1]["old_hash"] == c1.tools_hash
    first = httpx.get(f"{serve['base']}/api/mcp/servers/replayed/events", params={"limit": 1}, headers=project["admin"]).json()
    rest = httpx.get(f"{serve['base']}/api/mcp/servers/replayed/events", params={"limit": 1, "cursor": first["next_cursor"]},
                     headers=project["admin"]).json()
    assert [e["kind"] for e in first["items"] + rest["items"]] == ["down", "schema_drift"] and rest["next_cursor"] is None


def test_a_restarted_sink_remembers_each_servers_state(settings, project, tmp_path):
    """The state lives in the table's changelog: after a restart a server still down is no new
    `down`, and its recovery is compared with the tools it had before."""
    suffix = uuid.uuid4().hex[:6]
    (tmp_path / "serve").mkdir()
    running, serve = _start_serve(settings, tmp_path / "serve", suffix, SPANSTREAM_PROBE_IN_SERVE="false")
    try:
        _register(serve, project, {"name": "kept", "transport": "sse", "url": "http://127.0.0.1:9/sse", "enabled": False})
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        tools = [{"name": "search", "inputSchema": {}}]
        _publish(settings, serve["topic"], [_crafted(project, "kept", t0, 1, tools), _crafted(project, "kept", t0, 2, None)])
        _wait("down", _latest_is(serve, project, "kept", "down"), log=serve["log"])
        assert running.stop() == 0, running.log.read_text()[-3000:]

        running, serve = _start_serve(settings, tmp_path / "serve", suffix, SPANSTREAM_PROBE_IN_SERVE="false")
        _publish(settings, serve["topic"], [_crafted(project, "kept", t0, 3, None), _crafted(project, "kept", t0, 4, tools)])
        _wait("recovered", _latest_is(serve, project, "kept", "up"), log=serve["log"])
        kinds = [(e["kind"], e["check_id"].rsplit("-", 1)[1]) for e in reversed(_events(serve, project, "kept"))]
        assert kinds == [("down", "2"), ("recovered", "4")]
        assert len(_checks(serve, project, "kept")["items"]) == 4
    finally:
        assert running.stop() == 0, running.log.read_text()[-3000:]


def test_stdio_servers_are_off_unless_turned_on_and_an_ingestion_only_api_lists_without_status(settings, tmp_path):
    async def scenario():
        project_id, keys = await _project_keys(settings.postgres_dsn)
        admin = {"X-API-Key": keys["admin"]}
        async with metadata_api(settings) as client:  # defaults: stdio off; no analytics store
            refused = await client.post("/api/mcp/servers", json=_stdio("local", tmp_path / "t.json"), headers=admin)
            assert refused.status_code == 400 and "SPANSTREAM_PROBE_STDIO" in refused.text
            remote = {"name": "remote", "transport": "streamable_http", "url": "http://127.0.0.1:9/mcp", "enabled": False}
            assert (await client.post("/api/mcp/servers", json=remote, headers=admin)).status_code == 201
            listed = (await client.get("/api/mcp/servers", headers=admin)).json()
            assert [(s["name"], s["latest"]) for s in listed["items"]] == [("remote", None)]
            history = await client.get("/api/mcp/servers/remote/checks", headers=admin)
            assert history.status_code == 503 and "ingestion only" in history.text
        await _delete_servers(settings.postgres_dsn, project_id)

    asyncio.run(scenario())
