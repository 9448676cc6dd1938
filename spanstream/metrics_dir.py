"""Where the processes of one `spanstream serve` deployment write their Prometheus metrics.

Apart from spanstream/metrics.py because it must run before prometheus_client is imported:
the library picks its multiprocess value class at import time.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_process_dir(directory: Path) -> None:
    """For the command that starts a deployment's processes: they inherit the directory. The
    files of an earlier run are removed (their counters belong to processes that are gone)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("use_process_dir must run before prometheus_client is imported")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def process_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV)
