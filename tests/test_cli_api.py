"""`spanstream sql` and `spanstream sessions` against a real API server over HTTP."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from datetime import timedelta

import pytest
import uvicorn

from api.app import create_app
from spanstream.cli import main
from tests.clickhouse_seed import NOW, new_project, seed_session
from tests.conftest import free_port


@pytest.fixture(scope="module")
def api(settings, store):
    """The app over this session's chdb store, served by uvicorn in a thread on a free port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the API did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def project(settings, store):
    project_id, keys = asyncio.run(new_project(settings.postgres_dsn, "cli", ("admin", "viewer")))
    seed_session(store, project_id, "cli-newest", NOW, agents=["planner", "writer"], cost_nano_usd=2_500_000_000)
    seed_session(store, project_id, "cli-older", NOW - timedelta(hours=1), health_tag="tool_failure", spans=7)
    seed_session(store, project_id, "cli-ancient", NOW - timedelta(hours=48))
    return project_id, keys


def _run(capsys, monkeypatch, key, *argv) -> tuple[int, str, str]:
    monkeypatch.setenv("SPANSTREAM_API_KEY", key)
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        print(exit_.code, file=sys.stderr)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sql_prints_a_table(api, project, capsys, monkeypatch):
    code, out, _ = _run(capsys, monkeypatch, project[1]["admin"], "sql", "--url", api,
                        "SELECT session_id, spans, health_tag FROM sessions FINAL ORDER BY last_at DESC")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["session_id", "spans", "health_tag"]
    assert [line.split() for line in lines[2:5]] == [
        ["cli-newest", "2", "success"], ["cli-older", "7", "tool_failure"], ["cli-ancient", "2", "success"]]
    assert lines[-1] == "(3 rows)"


def test_sql_errors_say_why(api, project, capsys, monkeypatch):
    code, _, err = _run(capsys, monkeypatch, project[1]["viewer"], "sql", "--url", api, "SELECT 1")
    assert code != 0 and "403" in err and "admin" in err
    code, _, err = _run(capsys, monkeypatch, project[1]["admin"], "sql", "--url", api, "SELEC 1")
    assert code != 0 and "400" in err and "Syntax error" in err
    code, _, err = _run(capsys, monkeypatch, project[1]["admin"], "sql", "--url", "http://127.0.0.1:1", "SELECT 1")
    assert code != 0 and "does not answer" in err


def test_sessions_lists_recent_sessions(api, project, capsys, monkeypatch):
    code, out, _ = _run(capsys, monkeypatch, project[1]["viewer"], "sessions", "--url", api)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["session_id", "last_at", "duration_ms", "spans", "agents", "health_tag", "status", "cost_usd"]
    assert [line.split()[0] for line in lines[2:-1]] == ["cli-newest", "cli-older"]  # the 48 h old one is outside 24 h
    assert "planner, writer" in lines[2] and lines[2].split()[-1] == "2.5"
    assert lines[-1] == "(2 sessions in the last 24 h)"
    code, out, _ = _run(capsys, monkeypatch, project[1]["viewer"], "sessions", "--url", api, "--health-tag", "tool_failure")
    assert [line.split()[0] for line in out.splitlines()[2:-1]] == ["cli-older"]
