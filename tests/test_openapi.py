"""Schemathesis against a running `spanstream serve`: every operation in the OpenAPI schema,
fed generated and malformed input, answers without a 5xx and as its schema says."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.processes import serve_for_tests
from tests.test_end_to_end import _new_project

ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    running, _ = serve_for_tests(settings, tmp_path_factory.mktemp("serve"), "openapi", free_port())
    yield running.base
    assert running.stop() == 0, running.log.read_text()[-3000:]


def test_no_operation_answers_5xx_or_breaks_its_schema(settings, server, tmp_path):
    assert ST.exists() or shutil.which("st"), "schemathesis is a test dependency (pyproject.toml)"
    project_id, key = asyncio.run(_new_project(settings.postgres_dsn))
    # Path parameters naming the caller's project get its id, so those operations are exercised
    # past the 404 a random id earns.
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\nproject = "{project_id}"\n')
    command = [
        str(ST), "--config-file", str(config), "run", f"{server}/openapi.json", "--header", f"X-API-Key: {key}",
        # Deleting the project would leave every later case with a dead key.
        "--exclude-operation-id", "delete_api_projects__project__delete",
        "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples", "15", "--seed", "20261201", "--workers", "1", "--request-timeout", "30",
        "--phases", "examples,coverage,fuzzing", "--report", "junit", "--report-dir", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
