"""`spanstream infra up|down|status`: runs the scripts in infra/ for Kafka and PostgreSQL.

ClickHouse needs nothing started in embedded mode (chdb lives inside the process that opens it).
"""

from __future__ import annotations

import os
import subprocess

from spanstream.settings import REPO_ROOT, Settings

SERVICES = ("kafka", "postgres")


class InfraError(RuntimeError):
    """An infrastructure script failed; the message carries what it said."""


def _run(service: str, action: str, settings: Settings, quiet: bool) -> subprocess.CompletedProcess:
    script = REPO_ROOT / "infra" / f"{service}.sh"
    env = {**os.environ, "SPANSTREAM_DATA_DIR": str(settings.data_dir)}
    return subprocess.run(
        ["bash", str(script), action], env=env, text=True,
        stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE,
    )


def infra(action: str, settings: Settings, quiet: bool = False) -> dict[str, bool]:
    """Runs `action` for every service; for status returns which are running."""
    order = SERVICES if action != "down" else tuple(reversed(SERVICES))
    running = {}
    for service in order:
        result = _run(service, action, settings, quiet)
        if action == "status":
            running[service] = result.returncode == 0
            if not quiet and result.stderr:
                print(result.stderr, end="")
        elif result.returncode != 0:
            raise InfraError(result.stderr.strip() or f"infra/{service}.sh {action} failed")
        elif result.stderr:
            print(result.stderr, end="")
    if action == "status" and not quiet:
        where = settings.clickhouse_url or f"embedded (chdb) in {settings.data_dir / 'clickhouse'}"
        print(f"clickhouse: {where}")
    return running
