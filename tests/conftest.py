"""Real Kafka and PostgreSQL, started once per test session by the infra scripts, and chdb.

Tests never truncate shared state: each gets a fresh database, topic suffix, project or
consumer group. Services this session started are stopped at its end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import asyncpg
import pytest

from spanstream.clickhouse import ClickHouseStore
from spanstream.infra import infra
from spanstream.migrate import migrate_clickhouse, migrate_postgres
from spanstream.settings import Settings, load_settings

BASE = load_settings()


@pytest.fixture(scope="session", autouse=True)
def services() -> None:
    running = infra("status", BASE, quiet=True)
    infra("up", BASE)
    yield
    if os.environ.get("SPANSTREAM_TEST_KEEP_INFRA") != "1":
        started = [name for name, up in running.items() if not up]
        if started:
            infra("down", BASE, quiet=True)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_database(dsn: str, database: str) -> str:
    return dsn.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(scope="session")
def postgres_dsn(services) -> str:
    """A fresh, migrated database for this test session."""
    database = f"spanstream_test_{uuid.uuid4().hex[:10]}"
    admin_dsn = _with_database(BASE.postgres_dsn, "postgres")

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    dsn = _with_database(BASE.postgres_dsn, database)
    asyncio.run(migrate_postgres(dsn))
    yield dsn
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings(tmp_path_factory, postgres_dsn) -> Settings:
    """Settings of this test session: its own data dir (so its own chdb), database and topics."""
    suffix = uuid.uuid4().hex[:8]
    return load_settings(
        data_dir=tmp_path_factory.mktemp("data"),
        postgres_dsn=postgres_dsn,
        spans_topic=f"spans-test-{suffix}",
        sessions_topic=f"sessions-test-{suffix}",
        health_topic=f"health-test-{suffix}",
        health_checks_topic=f"health.checks-test-{suffix}",
        alerts_topic=f"alerts-test-{suffix}",
        health_check_events_topic=f"health.checks.events-test-{suffix}",
        alerts_consumer_group=f"spanstream-alerts-test-{suffix}",
        worker_id=f"spanstream-test-{suffix}",
        spans_partitions=3,
        api_port=free_port(),
        # Every test logs in from 127.0.0.1: one address's failed-login limit would tie the tests
        # together. It is tested on its own (tests/test_api_auth.py).
        login_ip_max_failures=0,
    )


@pytest.fixture(scope="session")
def store(settings) -> ClickHouseStore:
    """This process's one chdb store (a process may open a single chdb directory)."""
    opened = ClickHouseStore(settings).open()
    migrate_clickhouse(opened)
    yield opened
    opened.close()
