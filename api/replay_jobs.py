"""Replays run by this process on behalf of an operator, one at a time, on a thread of their own.

The embedded store can be opened by one process only, so a `spanstream replay` on the same
machine hands the work to the process that serves: the live views keep serving from it until
the replay swaps the rebuilt tables in. What replays is given at start-up (spanstream.serve),
since the API may not import the stream code it runs.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

# replay(reprice, since, report): blocks until the views are rebuilt; raises on failure.
Replayer = Callable[[bool, datetime | None, Callable[[str], None]], object]
MAX_LINES = 10_000


class ReplayRunning(RuntimeError):
    """A replay is already running; the message names it."""


@dataclass
class ReplayJob:
    id: str
    reprice: bool
    since: datetime | None
    state: Literal["running", "done", "failed"] = "running"
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    def report(self, line: str) -> None:
        if len(self.lines) >= MAX_LINES:
            del self.lines[: MAX_LINES // 10]  # a very long replay keeps its latest progress
        self.lines.append(line)


class ReplayJobs:
    def __init__(self, replayer: Replayer) -> None:
        self._replayer = replayer
        self._jobs: dict[str, ReplayJob] = {}
        self._lock = threading.Lock()

    def start(self, reprice: bool, since: datetime | None) -> ReplayJob:
        with self._lock:
            running = [job for job in self._jobs.values() if job.state == "running"]
            if running:
                raise ReplayRunning(f"replay {running[0].id} is still running")
            job = ReplayJob(uuid.uuid4().hex[:12], reprice, since)
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), name=f"replay-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> ReplayJob | None:
        return self._jobs.get(job_id)

    def _run(self, job: ReplayJob) -> None:
        try:
            self._replayer(job.reprice, job.since, job.report)
            job.state = "done"
        except Exception as error:  # noqa: BLE001 - reported to the operator who asked
            job.error = f"{type(error).__name__}: {error}"
            job.state = "failed"
        finally:
            job.finished_at = datetime.now(UTC)
