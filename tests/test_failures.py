"""A missing or unstartable service fails with a message that says what to do."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from spanstream.settings import REPO_ROOT, load_settings


def spanstream(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spanstream.cli", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=timeout,
    )


def test_worker_without_kafka_says_how_to_start_it(tmp_path, settings):
    result = spanstream("serve", env={
        "SPANSTREAM_DATA_DIR": str(tmp_path), "SPANSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
    })
    assert result.returncode != 0
    assert "Kafka does not answer at 127.0.0.1:1" in result.stderr
    assert "spanstream infra up" in result.stderr


def test_migrate_without_postgres_says_how_to_start_it(tmp_path):
    result = spanstream("migrate", env={
        "SPANSTREAM_DATA_DIR": str(tmp_path), "SPANSTREAM_POSTGRES_DSN": "postgresql://postgres:secret@127.0.0.1:1/x",
    })
    assert result.returncode != 0
    assert "PostgreSQL does not answer at 127.0.0.1:1/x" in result.stderr
    assert "secret" not in result.stderr
    assert "spanstream infra up" in result.stderr


def test_a_second_process_on_the_embedded_store_is_told_why_it_cannot_open_it(settings, store):
    # This test process holds the chdb directory in settings.data_dir (the `store` fixture).
    result = spanstream("migrate", env={"SPANSTREAM_DATA_DIR": str(settings.data_dir), "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn})
    assert result.returncode != 0
    assert "is open in another process" in result.stderr
    assert "SPANSTREAM_CLICKHOUSE_URL" in result.stderr


def test_an_unreachable_clickhouse_server_is_named(tmp_path, settings):
    result = spanstream("migrate", env={
        "SPANSTREAM_DATA_DIR": str(tmp_path), "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn,
        "SPANSTREAM_CLICKHOUSE_URL": "http://127.0.0.1:1",
    })
    assert result.returncode != 0
    assert "cannot reach ClickHouse at http://127.0.0.1:1" in result.stderr


def test_worker_alone_on_the_embedded_store_points_to_serve(tmp_path):
    result = spanstream("worker", env={"SPANSTREAM_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "spanstream serve" in result.stderr


def test_a_bad_setting_fails_at_start(tmp_path):
    result = spanstream("migrate", env={"SPANSTREAM_API_PORT": "99999"})
    assert result.returncode != 0
    assert "api_port" in result.stderr


def test_kafka_on_a_taken_port_says_so(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "infra" / "kafka.sh"), "up"], capture_output=True, text=True, timeout=60,
            env={**os.environ, "SPANSTREAM_DATA_DIR": str(tmp_path), "SPANSTREAM_KAFKA_PORT": str(port)},
        )
    assert result.returncode != 0
    assert f"port {port} is taken by another program" in result.stderr


def test_postgres_on_a_taken_port_says_so():
    # Under .data, not /tmp/pytest-of-root (mode 700): the postgres user must reach the directory.
    data_dir = Path(tempfile.mkdtemp(prefix="test-", dir=load_settings().data_dir))
    data_dir.chmod(0o755)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "infra" / "postgres.sh"), "up"], capture_output=True, text=True, timeout=120,
            env={**os.environ, "SPANSTREAM_DATA_DIR": str(data_dir), "SPANSTREAM_POSTGRES_PORT": str(port)},
        )
    shutil.rmtree(data_dir, ignore_errors=True)
    assert result.returncode != 0
    assert f"port {port} is taken by another program" in result.stderr
