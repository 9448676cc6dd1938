"""The replay's fold worker processes: started first, handed their shares of the partitions later, drained.

They are spawned, never forked: the replay process has chdb open, and a forked copy of an open
engine is not safe. Spawning costs each worker ~0.4 s of imports, so they start as soon as a
replay does and wait for their job while this process reads offsets and prepares tables.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path

from spanstream.clickhouse import ClickHouseStore
from spanstream.replay_store import raw_insert
from spanstream.replay_worker import COLUMNS, FoldJob, fold_partitions


class FoldWorkers:
    """`count` worker processes, each with a consumer of `topic` (in `group_id`, which never
    commits); `run` hands each one job (or none) and inserts what they send. Leaving the `with`
    block ends any worker still running."""

    def __init__(self, count: int, bootstrap: str, group_id: str, topic: str) -> None:
        context = multiprocessing.get_context("spawn")
        # Bounded, so workers wait for a parent that is inserting instead of piling bodies up.
        self._inbox = context.Queue(maxsize=2 * count + 2)
        self._jobs, self._workers = [], []
        for index in range(count):
            reader, writer = context.Pipe(duplex=False)
            worker = context.Process(target=fold_partitions, args=(reader, self._inbox, bootstrap, group_id, topic),
                                     name=f"replay-fold-{index}", daemon=True)
            worker.start()
            reader.close()
            self._jobs.append(writer)
            self._workers.append(worker)
        self._done = 0

    def __enter__(self) -> FoldWorkers:
        return self

    def __exit__(self, *_) -> None:
        for worker in self._workers:
            if worker.is_alive() and self._done < len(self._workers):
                worker.terminate()
            worker.join(10)
        for writer in self._jobs:
            writer.close()
        self._inbox.close()

    def run(self, jobs: list[FoldJob], store: ClickHouseStore, suffix: str, count: Callable[[int, int], None],
            tick: Callable[[], None]) -> int:
        """Runs `jobs` (at most one per worker), inserts what the workers send into
        `<view><suffix>`, calls `count(messages, spans)` as they go and `tick` at least twice a
        second; returns how many sessions they folded."""
        for writer, job in zip(self._jobs, [*jobs, *[None] * (len(self._workers) - len(jobs))]):
            writer.send(job)
        self._done, sessions = len(self._workers) - len(jobs), 0
        checked = time.monotonic()
        while self._done < len(self._workers):
            try:
                item = self._inbox.get(timeout=0.5)
            except queue.Empty:
                item = ("idle",)
            # Twice a second, not only when the queue is quiet: the other workers keep it busy.
            if time.monotonic() - checked >= 0.5:
                for worker in self._workers:
                    if worker.exitcode is not None and worker.exitcode < 0:
                        raise RuntimeError(f"replay worker {worker.name} was killed by signal {-worker.exitcode}")
                    if worker.exitcode:
                        raise RuntimeError(f"replay worker {worker.name} exited with {worker.exitcode}; "
                                           "its traceback is above")
                checked = time.monotonic()
            kind = item[0]
            if kind == "file":
                raw_insert(store, f"{item[1]}{suffix}", COLUMNS[item[1]], Path(item[2]))
                os.unlink(item[2])
            elif kind == "pyrows":
                store.insert_sync(f"{item[1]}{suffix}", item[2], COLUMNS[item[1]])
            elif kind == "progress":
                count(item[1], item[2])
            elif kind == "done":
                self._done += 1
                sessions += item[1]
            tick()
        return sessions
