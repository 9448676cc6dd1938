"""Checks that docker-compose.yml resolves to the production topology a user deploys."""

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("api", "worker", "fold")


def _docker_compose_available() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "docker CLI not installed; cannot resolve docker-compose.yml"
    # The CLI can be present without the compose plugin, which `docker compose config` needs.
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return False, "docker compose plugin not installed; cannot resolve docker-compose.yml"
    return True, ""


@pytest.fixture(scope="module")
def compose() -> dict:
    available, reason = _docker_compose_available()
    if not available:
        pytest.skip(reason)
    # `config` only parses and interpolates the file, so it needs no Docker engine.
    result = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yml", "config", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_component_of_the_topology_is_a_service(compose: dict) -> None:
    expected = {"kafka", "clickhouse", "postgres", "migrate", "api", "worker", "fold", "prometheus"}
    assert expected <= set(compose["services"])


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_reach_the_stores_inside_the_compose_network(compose: dict, service: str) -> None:
    services = compose["services"]
    env = services[service]["environment"]

    clickhouse = urlsplit(env["SPANSTREAM_CLICKHOUSE_URL"])
    assert clickhouse.hostname == "clickhouse" and "clickhouse" in services
    assert clickhouse.port == 8123
    assert env["SPANSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert urlsplit(env["SPANSTREAM_POSTGRES_DSN"]).hostname == "postgres"


def test_api_is_published_on_port_8000(compose: dict) -> None:
    ports = compose["services"]["api"].get("ports", [])
    assert any(p["target"] == 8000 and str(p.get("published")) == "8000" for p in ports), ports


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_start_only_after_migrations_succeed(compose: dict, service: str) -> None:
    depends_on = compose["services"][service]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
