"""Starting and stopping real `spanstream` processes for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class RunningSpanstream:
    process: subprocess.Popen
    base: str
    log: Path

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would; fails the test if it does not stop cleanly within 30 s."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"spanstream did not stop within 30 s of SIGINT:\n{self.log.read_text()[-3000:]}")


def start_spanstream(command: str, env: dict[str, str], port: int, log: Path, ready: str = "/api/readiness") -> RunningSpanstream:
    """Starts `spanstream COMMAND` and waits until `ready` answers 200 (90 s at most)."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "spanstream.cli", command], env={**os.environ, **env},
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"spanstream {command} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + ready, timeout=1).status_code == 200:
                return RunningSpanstream(process, base, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"spanstream {command} never became ready:\n{log.read_text()[-3000:]}")


def serve_for_tests(settings, data_dir: Path, suffix: str, port: int,
                    env: dict[str, str] | None = None) -> tuple[RunningSpanstream, dict[str, str]]:
    """`spanstream serve` with its own chdb directory, topics and consumer group (and any other
    SPANSTREAM_* settings in `env`); returns it and its topics."""
    topics = {
        "spans": f"{settings.spans_topic}-{suffix}",
        "sessions": f"{settings.sessions_topic}-{suffix}",
        "health": f"{settings.health_topic}-{suffix}",
        "health_checks": f"{settings.health_checks_topic}-{suffix}",
        "alerts": f"{settings.alerts_topic}-{suffix}",
        "worker_id": f"{settings.worker_id}-{suffix}",
    }
    running = start_spanstream("serve", {
        "SPANSTREAM_DATA_DIR": str(data_dir),
        "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
        "SPANSTREAM_SPANS_TOPIC": topics["spans"],
        "SPANSTREAM_SESSIONS_TOPIC": topics["sessions"],
        "SPANSTREAM_HEALTH_TOPIC": topics["health"],
        "SPANSTREAM_HEALTH_CHECKS_TOPIC": topics["health_checks"],
        "SPANSTREAM_ALERTS_TOPIC": topics["alerts"],
        "SPANSTREAM_ALERTS_CONSUMER_GROUP": f"{settings.alerts_consumer_group}-{suffix}",
        "SPANSTREAM_WORKER_ID": topics["worker_id"],
        "SPANSTREAM_SPANS_PARTITIONS": str(settings.spans_partitions),
        "SPANSTREAM_API_PORT": str(port),
        "SPANSTREAM_SINK_BATCH_SECONDS": "0.2",
        **(env or {}),
    }, port, data_dir / "serve.log")
    return running, topics
