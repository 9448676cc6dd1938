"""A replay fold worker: a child process that decodes and folds its own partitions of `spans`.

Sessions are partition-local (the topic is keyed by session), so each worker folds its
partitions alone, one after another, message by message in offset order, with the live
worker's step (streams.session_step.apply_spans): the same versions and health changes as
before. When a partition is done, so are its sessions: their rows go out then, not all in a
burst at the end while the other worker and the inserts wait, and their states are freed. It
opens no store (chdb allows one process per directory): it writes ready-to-insert bodies to
files and tells the parent, which only inserts them.

Queue items: ("file", view, path, rows) for a body in a file (the parent inserts it and removes
it), ("pyrows", view, rows) for rows JSON cannot carry exactly, ("progress", messages, spans)
deltas, and last ("done", sessions).
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue

from confluent_kafka import Consumer, KafkaException, Message

from schemas.span import decode_message
from spanstream.insert_bodies import SPAN_COLUMNS, cost_values, encode_column_values, span_values
from spanstream.replay_scan import replay_consumer, scan
from streams.health import HealthRules
from streams.pricing import PriceBook
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS, health_row, session_row
from streams.session_step import apply_spans, by_session
from streams.sessions import SessionState, session_record

COLUMNS = {"spans": SPAN_COLUMNS, "sessions": SESSION_COLUMNS, "session_costs": COST_COLUMNS,
           "session_health": HEALTH_COLUMNS}
PROGRESS_SECONDS = 0.25


@dataclass(frozen=True)
class FoldJob:
    """One worker's share of a replay. With `affected` (replay --from), only the sessions whose
    message key is in it are folded, and spans are re-written from `since_offsets` on."""

    starts: dict[int, int]
    ends: dict[int, int]
    book: PriceBook
    rules: HealthRules
    write_spans: bool
    chunk_rows: int
    # Bodies go through files: through the queue, each was copied three times on the way and the
    # replay process spent half a second of a 500,000-span replay just receiving them.
    body_dir: str
    affected: frozenset[bytes] | None = None
    since_offsets: dict[int, int] | None = None


class _Parent:
    """The queue to the replay process, which may die: then this worker stops instead of
    folding (or waiting on a full queue) for nobody."""

    def __init__(self, out: Queue) -> None:
        self.out, self.pid = out, os.getppid()

    def put(self, item: tuple) -> None:
        while True:
            if os.getppid() != self.pid:
                raise SystemExit("the replay process is gone")
            try:
                return self.out.put(item, timeout=1.0)
            except queue.Full:
                continue


# (view, rows, their JSONCompactColumns body): with a body, the number of rows in it; without
# (None: JSON cannot carry them exactly), the rows themselves.
Deliver = Callable[[str, "list | int", bytes | None], None]


class _Outbox:
    # Rows are kept as columns, a message's rows at a time: transposing them while they are
    # fresh costs less than transposing 50,000 of them back from memory for the body.
    def __init__(self, deliver: Deliver, view: str, chunk_rows: int) -> None:
        self.deliver, self.view, self.columns, self.chunk_rows = deliver, view, COLUMNS[view], chunk_rows
        self._empty()

    def _empty(self) -> None:
        self.values: list[list] = [[] for _ in self.columns]
        self.count = 0

    def add(self, rows: Sequence[Sequence]) -> None:
        if rows:
            for values, column in zip(self.values, zip(*rows)):
                values.extend(column)
            self.count += len(rows)

    def send(self, at_least: int = 1) -> None:
        if self.count < at_least:
            return
        values = self.values
        self._empty()
        body = encode_column_values(self.columns, values)
        self.deliver(self.view, list(zip(*values)) if body is None else len(values[0]), body)


class WorkerFold:
    """A worker's fold of its messages, apart from reading them and passing the bodies on:
    `fold_message` for each message in offset order, then `finish`. `deliver` gets each body
    as it is ready (loadtests/bench_fold.py runs this without Kafka)."""

    def __init__(self, job: FoldJob, deliver: Deliver) -> None:
        self.job = job
        self.boxes = {view: _Outbox(deliver, view, job.chunk_rows) for view in COLUMNS}
        self.states: dict[bytes, SessionState] = {}
        self.closed = 0

    def fold_message(self, key: bytes | None, value: bytes, partition: int, offset: int) -> int:
        """Folds one `spans` message; returns how many spans it held (0 when it is skipped)."""
        job, boxes, states = self.job, self.boxes, self.states
        if job.affected is not None and key not in job.affected:
            return 0
        spans, _ = decode_message(value)
        since = job.since_offsets
        if job.write_spans and (since is None or offset >= since[partition]):
            boxes["spans"].add(list(map(span_values, spans)))
        for session, group in by_session(spans).items():
            state = states.get(session) or states.setdefault(session, SessionState(group[0].project_id,
                                                                                    group[0].session_id))
            step = apply_spans(state, group, job.book, job.rules, with_record=False)
            change = step.health_change
            if step.changed and change is not None and change["version"] == state.version:
                boxes["session_health"].add([health_row(change)])
        # Per message, not per consumer batch: a batch of 2,000 messages can take seconds to fold.
        boxes["spans"].send(job.chunk_rows)
        boxes["session_health"].send(job.chunk_rows)
        return len(spans)

    def close_sessions(self) -> None:
        """Every session folded so far has seen its last span (its partition is done): its
        last record goes out, and its state is freed."""
        boxes = self.boxes
        for state in self.states.values():
            record = session_record(state, state.health_tag)
            boxes["sessions"].add([session_row(record)])
            boxes["session_costs"].add(cost_values(record))
            for view in ("sessions", "session_costs"):
                boxes[view].send(self.job.chunk_rows)
        self.closed += len(self.states)
        self.states = {}

    def finish(self) -> int:
        """Sends what is left, with every open session's last record; returns the number of sessions."""
        boxes = self.boxes
        # The last spans first: the parent inserts them while the session rows are built.
        boxes["spans"].send()
        boxes["session_health"].send()
        self.close_sessions()
        for box in boxes.values():
            box.send()
        return self.closed


def fold_partitions(jobs: Connection, out: Queue, bootstrap: str, group_id: str, topic: str) -> None:
    """The worker process: waits for its FoldJob on `jobs` (None: nothing to do), folds the
    job's partitions of `topic` and puts what to insert on `out`."""
    # Ctrl-C reaches the whole process group; the parent decides, and terminates its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = _Parent(out)
    consumer = replay_consumer(bootstrap, group_id)
    try:
        try:
            # Connected while the parent prepares: the first fetch then waits for no handshake.
            consumer.list_topics(topic, timeout=10)
        except KafkaException:
            pass  # only a head start: the scan waits for the broker as it always did
        try:
            job = jobs.recv()
        except EOFError:  # the parent is gone
            return
        if job is not None:
            _fold(job, parent, consumer, topic)
    finally:
        consumer.close()


def _fold(job: FoldJob, parent: _Parent, consumer: Consumer, topic: str) -> None:
    # Spans, rows and session states are trees, and the states live to their partition's end:
    # the collector found nothing to free, and walking them again and again took a sixth of the
    # worker's time at the default thresholds (still 3% at 50,000 allocations a collection).
    gc.disable()
    sent = 0

    def deliver(view: str, rows: list | int, body: bytes | None) -> None:
        nonlocal sent
        if body is None:
            parent.put(("pyrows", view, rows))
            return
        sent += 1
        path = os.path.join(job.body_dir, f"{view}-{os.getpid()}-{sent}.json")
        with open(path, "wb") as file:
            file.write(body)
        parent.put(("file", view, path, rows))

    folder = WorkerFold(job, deliver)
    counts = [0, 0]  # messages, spans since the last progress item
    last_progress = time.monotonic()

    def fold_message(message: Message) -> None:
        counts[0] += 1
        counts[1] += folder.fold_message(message.key(), message.value(), message.partition(), message.offset())
        if time.monotonic() - last_progress >= PROGRESS_SECONDS:
            report_progress()

    def report_progress() -> None:
        nonlocal last_progress
        parent.put(("progress", *counts))
        counts[:] = [0, 0]
        last_progress = time.monotonic()

    for partition in sorted(job.starts):
        scan(consumer, topic, {partition: job.starts[partition]}, {partition: job.ends[partition]}, fold_message)
        folder.close_sessions()
    sessions = folder.finish()
    report_progress()
    parent.put(("done", sessions))
