"""The whole pipeline in one run: produce, raw consume, `spanstream serve` end to end, and produce-to-visible latency."""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from api.repositories.projects import project_for_key
from loadtests.bench_http_ingest import create_key, percentile, process_usage
from loadtests.bench_produce import Result, machine, publish
from loadtests.generate import generate_session
from loadtests.pipeline_watch import MODES, SessionWatch
from schemas.span import Span, encode_span, encode_spans, session_messages
from spanstream.kafka import KafkaUnavailable, changelog_topic_name, check_kafka, delete_topics, ensure_topics
from spanstream.producer import make_producer
from spanstream.settings import Settings, load_settings

LANGSIGHT_PER_WORKER = 274  # spans/s, LangSight's published ingestion figure for one worker
LANGSIGHT_FOUR_WORKERS = 1_000  # "~1,000 spans/s" with four workers
SERVER_START_TIMEOUT_S = 120.0
# Phase A gives up when the summary has not moved for this long: the worker is stuck, not slow.
STALL_S = 120.0
# Phase B: how long after the last ack a session may still become visible, and how often to look.
GRACE_S = 30.0
DETAIL_CHECKS = 200
RAW_PASSES = 3
# librdkafka stops fetching for fetch.queue.backoff.ms (1 s by default) whenever its prefetch queue
# is full (64 MiB); a 34 KB-message topic fills it at once, and a reader that drains it in
# milliseconds would then measure the backoff: some reads of 500,000 spans took 1.2 s instead of 0.2 s.
RAW_CONSUMER = {"fetch.queue.backoff.ms": 10}
SPANS_SAMPLE = 5  # Phase A sessions whose rows in the spans table are counted when the summary matches
OUR_PACKAGES = ("streams", "schemas", "api")
Message = tuple[bytes, bytes, int]  # key, value, spans in it


# --- the machine ------------------------------------------------------------------------------

def _broker_pid() -> int | None:
    """The local Kafka broker's JVM, to show how much of the two cores it takes; None if not found."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.split(b"\0", 1)[0].rsplit(b"/", 1)[-1] == b"java" and b"kafka" in cmdline:
                return int(entry.name)
    return None


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)  # minus idle and iowait


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children(pid: int) -> list[int]:
    """The direct children of `pid` (the fold workers of `spanstream serve`)."""
    try:
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    except OSError:
        return []


def _cpu_of(pid: int | None) -> float | None:
    usage = process_usage(pid) if pid else None
    return usage.cpu_s if usage else None


@dataclass
class Meter:
    """CPU of the server, its fold children, the broker, this script and the whole machine from
    `started` on. A fold child started again meanwhile is counted from its start."""

    server_pid: int
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.broker_pid = _broker_pid()
        self.server0 = process_usage(self.server_pid)
        self.broker0 = _cpu_of(self.broker_pid)
        self.folds0 = {pid: _cpu_of(pid) or 0.0 for pid in _children(self.server_pid)}
        self.self0 = _self_cpu()
        self.machine0 = _machine_jiffies()

    def read(self) -> dict[str, float]:
        server = process_usage(self.server_pid)
        broker = _cpu_of(self.broker_pid)
        folds = {pid: _cpu_of(pid) for pid in _children(self.server_pid)}
        busy, total = _machine_jiffies()
        nan = float("nan")
        return {
            "seconds": time.perf_counter() - self.started,
            "server_cpu": server.cpu_s - self.server0.cpu_s if server and self.server0 else nan,
            "server_peak_rss_mib": server.peak_rss_kib / 1024 if server else nan,
            "fold_cpu": sum(cpu - self.folds0.get(pid, 0.0) for pid, cpu in folds.items() if cpu is not None)
            if folds else nan,
            "broker_cpu": broker - self.broker0 if broker is not None and self.broker0 is not None else nan,
            "bench_cpu": _self_cpu() - self.self0,
            "machine_busy": (busy - self.machine0[0]) / max(1, total - self.machine0[1]),
        }


def describe_cpu(usage: dict[str, float], spans: int = 0) -> str:
    """Cores each process used on average, and with `spans`, CPU microseconds per span: the
    figure that compares across runs on a machine other work shares."""
    s = usage["seconds"]
    names = ("server_cpu", "fold_cpu", "broker_cpu", "bench_cpu")
    server, fold, broker, bench = (usage[name] / s for name in names)
    # Whatever else ran (another test suite, the kernel's loopback work) competed for the same cores.
    others = usage["machine_busy"] * (os.cpu_count() or 1) - server - fold - broker - bench
    per_span = ""
    if spans:
        per_span = ("; CPU per span: " + ", ".join(f"{label} {usage[name] / spans * 1e6:.0f} µs" for label, name in (
            ("server", "server_cpu"), ("fold", "fold_cpu"), ("broker", "broker_cpu"))))
    return (f"server {usage['server_cpu']:.1f} CPU-s ({server:.2f} cores), fold {usage['fold_cpu']:.1f} CPU-s "
            f"({fold:.2f} cores), broker {broker:.2f} cores, this script {bench:.2f} cores, everything else "
            f"{others:.2f} cores (machine {usage['machine_busy']:.0%} busy, {os.cpu_count()} CPUs){per_span}; "
            f"server peak RSS {usage['server_peak_rss_mib']:.0f} MiB")


# --- the spans --------------------------------------------------------------------------------

def _messages(session: list[Span], per_message: int | None = None) -> list[Message]:
    if per_message:
        # What a producer that does not batch by session sends: a few spans, or one, a message.
        chunks = [session[i:i + per_message] for i in range(0, len(session), per_message)]
        key = session[0].session_id.encode()
        return [(key, encode_span(chunk[0]) if len(chunk) == 1 else encode_spans(chunk), len(chunk)) for chunk in chunks]
    encoded = session_messages(session)
    # A 50-span session is one ~34 KB message; only sessions past 512 KB are split, and then
    # the spans are counted where the split happened to fall.
    if len(encoded) == 1:
        return [(encoded[0][0], encoded[0][1], len(session))]
    return [(key, value, value.count(b'"span_id"')) for key, value in encoded]


def phase_a_messages(seed: int, spans: int, per_session: int, project_id: str, start: datetime,
                     per_message: int | None = None) -> tuple[list[Message], int, datetime]:
    """Batch messages for exactly `spans` spans (whole sessions, a shorter last one if needed);
    returns them, the number of sessions and the latest `ended_at`, which Phase B must pass."""
    whole, rest = divmod(spans, per_session)
    sizes = [per_session] * whole + ([rest] if rest else [])
    messages: list[Message] = []
    latest = start
    for index, size in enumerate(sizes):
        session = generate_session(seed, index, size, project_id, start)
        latest = max(latest, *(span.ended_at for span in session))
        messages.extend(_messages(session, per_message))
    return messages, len(sizes), latest


def phase_b_sessions(seed: int, sessions: int, per_session: int, project_id: str, first_last_at: datetime,
                     gap: timedelta, per_message: int | None = None) -> list[tuple[str, list[Message], datetime]]:
    """New sessions, each shifted so that its last span ends `gap` after the previous one's: the
    list endpoint sorts by last_at, so produce order is list order and the newest sessions are
    always on its first page."""
    out = []
    for index in range(sessions):
        session = generate_session(seed, index, per_session, project_id, first_last_at)
        shift = first_last_at + index * gap - max(span.ended_at for span in session)
        shifted = [span.model_copy(update={"started_at": span.started_at + shift, "ended_at": span.ended_at + shift})
                   for span in session]
        last_at = max(span.ended_at or span.started_at for span in shifted)
        out.append((session[0].session_id, _messages(shifted, per_message), last_at))
    return out


# --- Kafka ------------------------------------------------------------------------------------

def raw_consume(settings: Settings, topic: str, group: str, label: str = "raw consume") -> tuple[int, int, float]:
    """Reads every message of `topic` to its end without decoding; returns (messages, bytes, seconds).
    Partitions are assigned, not subscribed: a new group's first rebalance waits the broker's
    group.initial.rebalance.delay.ms (3 s by default), which is not consuming."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False, "enable.partition.eof": True, **RAW_CONSUMER})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        expected = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        pending = set(partitions)
        messages = size = 0
        started = time.perf_counter()
        next_report = started + 1.0
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        # Short waits: consume() returns early only once it has num_messages, so a long timeout
        # would be added to the clock at the end of the topic.
        while pending and messages < expected:
            for message in consumer.consume(1000, timeout=0.01):
                error = message.error()
                if error is None:
                    messages += 1
                    size += len(message.value())
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    raise KafkaException(error)
            if (now := time.perf_counter()) >= next_report:
                next_report = now + 1.0
                print(f"  {label}: {messages:>9,}/{expected:,} messages, {messages / (now - started):,.0f}/s",
                      flush=True)
        return messages, size, time.perf_counter() - started
    finally:
        consumer.close()


def dead_letters(settings: Settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-pipeline-dlq"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(f"{settings.spans_topic}.dlq", 0), timeout=10)[1]
    finally:
        consumer.close()


def print_derived_topics(settings: Settings, suffix: str, spans: int) -> None:
    """What the worker wrote back to Kafka for the spans it read: every byte sent is CPU it spends."""
    print("\nwritten to Kafka by the worker (read back raw after the run):")
    for topic in (settings.sessions_topic, changelog_topic_name(settings, "sessions"), settings.health_topic):
        messages, size, _ = raw_consume(settings, topic, f"bench-derived-{suffix}", topic)
        print(f"  {topic:<48}{messages:>9,} messages, {size / max(1, messages) / 1024:6.1f} KiB each, "
              f"{size / spans:6.0f} bytes per input span")


# --- the server -------------------------------------------------------------------------------

def _spanstream_command() -> list[str]:
    script = Path(sys.executable).parent / "spanstream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "spanstream.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PipelineServer:
    """`spanstream serve` as a child process with its own topics, worker id, chdb directory and port."""

    def __init__(self, suffix: str) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"spanstream-pipeline-{suffix}-"))
        self.log_path = Path(tempfile.mkstemp(prefix=f"spanstream-pipeline-{suffix}-", suffix=".log")[1])
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            "SPANSTREAM_SPANS_TOPIC": f"spans-bench-{suffix}",
            "SPANSTREAM_SESSIONS_TOPIC": f"sessions-bench-{suffix}",
            "SPANSTREAM_HEALTH_TOPIC": f"health-bench-{suffix}",
            "SPANSTREAM_WORKER_ID": f"spanstream-bench-{suffix}",
            "SPANSTREAM_DATA_DIR": str(self.data_dir),
            "SPANSTREAM_API_HOST": "127.0.0.1",
            "SPANSTREAM_API_PORT": str(self.port),
        }
        # The child's settings as it will read them, so that the topics get its names and configs.
        self.settings = load_settings(**{name.removeprefix("SPANSTREAM_").lower(): value
                                         for name, value in self.env.items()})
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def topics(self) -> list[str]:
        s = self.settings
        return [s.spans_topic, f"{s.spans_topic}.dlq", s.sessions_topic, s.health_topic,
                changelog_topic_name(s, "sessions")]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"spanstream serve exited with {self.process.returncode}:\n{self.log_tail()}")

    def start(self) -> float:
        """Starts the server; returns the perf_counter time at which readiness first answered 200."""
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([*_spanstream_command(), "serve"], env={**os.environ, **self.env},
                                            stdout=log, stderr=subprocess.STDOUT)
        print(f"started `spanstream serve` (pid {self.pid}) on port {self.port}, log {self.log_path}", flush=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(self.base + "/api/readiness", timeout=2).status_code == 200:
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"spanstream serve was not ready within {SERVER_START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                print("spanstream serve did not stop within 60 s of SIGINT; killing it", file=sys.stderr)
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def clean_up(self) -> None:
        try:
            delete_topics(self.settings)
        except KafkaException as error:
            print(f"could not delete topics {self.topics()}: {error}", file=sys.stderr)
        shutil.rmtree(self.data_dir, ignore_errors=True)


async def _project_id(dsn: str, key: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        project = await project_for_key(connection, key)
    finally:
        await connection.close()
    if project is None:
        raise RuntimeError("the key `spanstream create-key` printed does not resolve to a project")
    return str(project.id)


# --- phase A: end to end ----------------------------------------------------------------------

@dataclass
class EndToEnd:
    seconds: float  # readiness answered -> summary matched
    steady_seconds: float  # first non-zero summary -> summary matched
    spans_at_ready: int
    spans_at_first: int
    usage: dict[str, float]
    spans_table: list[int]  # rows in the spans table of the sampled sessions when the summary matched
    profile: str | None = None


def wait_for_summary(server: PipelineServer, http: httpx.Client, ready_at: float, spans: int, sessions: int,
                     sample: list[str], profile_path: str | None) -> EndToEnd:
    """Polls the summary once a second (five times a second near the end) until it shows every span and session."""
    meter = Meter(server.pid, started=ready_at)
    history: list[tuple[float, int]] = []
    first: tuple[float, int] | None = None
    profilers: list[tuple[subprocess.Popen, str, str]] = []
    last_change = last_print = ready_at
    while True:
        server.check_alive()
        try:
            response = http.get("/api/agents/sessions/summary", params={"hours": 24})
            response.raise_for_status()
            summary = response.json()
        except httpx.HTTPError as error:
            print(f"  summary failed: {error}", flush=True)
            time.sleep(1.0)
            continue
        now = time.perf_counter()
        seen, seen_sessions = int(summary["spans"]), int(summary["sessions"])
        if seen == spans and seen_sessions == sessions:
            usage = meter.read()
            break
        if seen > spans or seen_sessions > sessions:
            raise RuntimeError(f"the summary shows {seen:,} spans in {seen_sessions:,} sessions, more than published")
        if history and seen != history[-1][1]:
            last_change = now
        elif now - last_change > STALL_S:
            raise RuntimeError(f"the summary has shown {seen:,} of {spans:,} spans for {STALL_S:.0f} s; giving up")
        history.append((now, seen))
        if first is None and seen > 0:
            first = (now, seen)
            if profile_path:
                # The server and each fold child, each into a file of its own.
                for name, pid in [("server", server.pid), *((f"fold {n}", child) for n, child
                                                            in enumerate(_children(server.pid)))]:
                    path = profile_path if name == "server" else f"{profile_path}.fold{name.split()[1]}"
                    if (profiler := _start_profiler(pid, path)) is not None:
                        profilers.append((profiler, path, name))
        recent = [(t, n) for t, n in history if t >= now - 5.0]
        rate = (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]) if len(recent) > 1 else 0.0
        eta = (spans - seen) / rate if rate > 0 else math.inf
        if now - last_print >= 0.99:
            last_print = now
            print(f"  [{now - ready_at:6.1f} s] {seen:>10,}/{spans:,} spans, {seen_sessions:>8,}/{sessions:,} "
                  f"sessions visible, {rate:>8,.0f} spans/s (last 5 s), ETA "
                  f"{'?' if math.isinf(eta) else f'{eta:.0f} s'}", flush=True)
        # Near the end, poll faster so that the clock stops close to the real moment.
        time.sleep(max(0.0, (0.2 if eta < 3 else 1.0) - (time.perf_counter() - now)))
    # The summary reads the sessions view only; the spans sink is a separate agent.
    spans_table = [len(http.get("/api/spans", params={"session_id": sid, "limit": 1000}).json()["items"])
                   for sid in sample]
    profile = "\n".join(f"{name}: {_finish_profiler(profiler, path)}" for profiler, path, name in profilers) or None
    first_at, first_spans = first or (now, 0)
    return EndToEnd(now - ready_at, now - first_at, history[0][1] if history else spans, first_spans, usage,
                    spans_table, profile)


def _start_profiler(pid: int, path: str) -> subprocess.Popen | None:
    py_spy = Path(sys.executable).parent / "py-spy"
    try:
        return subprocess.Popen([str(py_spy), "record", "-p", str(pid), "-d", "10", "-f", "raw", "-o", path,
                                 "--nonblocking"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as error:
        print(f"  could not start py-spy: {error}", file=sys.stderr)
        return None


def _finish_profiler(profiler: subprocess.Popen, path: str) -> str:
    try:
        output, _ = profiler.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        output, _ = profiler.communicate()
    if profiler.returncode != 0 or not Path(path).exists():
        return f"py-spy failed ({profiler.returncode}): {output.strip()[-500:]}"
    return summarize_profile(path)


def summarize_profile(path: str, top: int = 12) -> str:
    """Where a py-spy raw (collapsed) profile's samples are: by package and function of the running
    frame, and which of our own functions they pass through."""
    packages: Counter[str] = Counter()
    running: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame(frame) for frame in stack.split(";")]
        packages[frames[-1][0]] += samples
        running[frames[-1][1]] += samples
        for name in {name for package, name in frames if package in OUR_PACKAGES}:
            ours[name] += samples
    if not total:
        return "py-spy recorded no samples"

    def block(title: str, counts: Counter[str]) -> list[str]:
        return [f"  {title}:"] + [f"    {n / total:6.1%}  {name}" for name, n in counts.most_common(top)]

    return "\n".join([f"py-spy, 10 s in Phase A: {total:,} samples, all threads ({path})",
                      *block("running frame, by package", packages), *block("running frame", running),
                      *block("inclusive, our code", ours)])


def _frame(frame: str) -> tuple[str, str]:
    # "function (package/module.py:123)" -> package and "function (package/module.py)": line
    # numbers would split one function into many rows.
    name, _, location = frame.partition(" (")
    where = location.rstrip(")").rsplit(":", 1)[0]
    return where.split("/", 1)[0].removesuffix(".py") or "?", f"{name} ({where})" if where else name


# --- phase B: latency -------------------------------------------------------------------------

@dataclass
class Latency:
    sessions: int
    spans_acked: int
    not_acked: int
    produce_seconds: float  # first produce -> last ack
    latencies_ms: list[float]  # sorted
    missing: int
    missing_checked: int
    missing_but_stored: int
    usage: dict[str, float]
    polling_alone: dict[str, float]
    watch: SessionWatch


def measure_latency(server: PipelineServer, http: httpx.Client, key: str, settings: Settings,
                    sessions: list[tuple[str, list[Message], datetime]], rate: float, spans_per_session: int,
                    probe: str) -> Latency:
    watch = SessionWatch(server.base, key, spans_per_session, [(sid, last_at) for sid, _, last_at in sessions], probe)
    watch.start()
    # Two seconds of polling with no spans flowing: what the observer alone costs the server.
    idle = Meter(server.pid)
    time.sleep(2.0)
    polling_alone = idle.read()
    acked: dict[int, float] = {}
    failures: list[KafkaError] = []

    def delivered(index: int, error: KafkaError | None) -> None:
        if error is None:
            acked[index] = max(acked.get(index, 0.0), time.perf_counter())
        else:
            failures.append(error)

    producer = make_producer(settings)
    producer.list_topics(settings.spans_topic, timeout=10)  # connected before the clock starts
    interval = spans_per_session / rate
    ids = [session_id for session_id, _, _ in sessions]
    meter = Meter(server.pid)
    started = next_report = meter.started
    for index, (_, messages, _) in enumerate(sessions):
        due = started + index * interval
        # poll(), not sleep(): delivery callbacks run inside it, so ack times are taken as acks arrive.
        while (wait := due - time.perf_counter()) > 0:
            producer.poll(wait)
        for message_key, value, _ in messages:
            producer.produce(settings.spans_topic, value, message_key,
                             on_delivery=lambda error, _message, i=index: delivered(i, error))
        producer.poll(0)
        watch.produced(index, time.perf_counter())
        if time.perf_counter() >= next_report:
            next_report += 1.0
            _latency_progress(started, ids[: index + 1], len(sessions), acked, watch)
    not_acked = producer.flush(30) + len(failures)
    last_ack = max(acked.values(), default=time.perf_counter())
    while time.perf_counter() < last_ack + GRACE_S and not all(i in watch.first_complete for i in ids):
        time.sleep(0.25)
        if time.perf_counter() >= next_report:
            next_report += 1.0
            _latency_progress(started, ids, len(sessions), acked, watch)
    usage = meter.read()
    watch.stopping.set()
    watch.join()
    latencies = sorted((watch.first_complete[sid] - acked[i]) * 1000 for i, sid in enumerate(ids)
                       if i in acked and sid in watch.first_complete)
    missing = [sid for i, sid in enumerate(ids) if i in acked and sid not in watch.first_complete]
    # A session can be stored yet never seen by the list poll (late, or pushed off its first page
    # before a poll caught it): look some up one by one, so that "not seen" is not read as "lost".
    stored = sum(1 for sid in missing[:DETAIL_CHECKS]
                 if (r := http.get(f"/api/agents/sessions/{sid}")).status_code == 200
                 and r.json()["spans"] >= spans_per_session)
    spans_acked = sum(n for i in acked for _, _, n in sessions[i][1])
    return Latency(len(sessions), spans_acked, not_acked, last_ack - started, latencies, len(missing),
                   min(len(missing), DETAIL_CHECKS), stored, usage, polling_alone, watch)


def _latency_progress(started: float, produced: list[str], total: int, acked: dict, watch: SessionWatch) -> None:
    visible = sum(1 for session_id in produced if session_id in watch.first_complete)
    print(f"  [{time.perf_counter() - started:6.1f} s] {len(produced):>7,}/{total:,} sessions produced, "
          f"{len(acked):>7,} acked, {visible:>7,} visible complete; {watch.polls:,} probe polls", flush=True)


# --- the run ----------------------------------------------------------------------------------

def phase_a(args: argparse.Namespace, settings: Settings, messages: list[Message], suffix: str
            ) -> tuple[Result, tuple[int, int, float]]:
    print("\nPhase A: sustained throughput")
    produced = publish(settings, settings.spans_topic, "batch", iter(messages), args.spans)
    if produced.failures:
        raise RuntimeError(f"{len(produced.failures)} delivery failures, e.g. {produced.failures[:3]}")
    print(f"producer               {produced.spans_per_s:,.0f} spans/s ({produced.messages:,} messages in "
          f"{produced.seconds:.2f} s; acks=all, lz4)", flush=True)
    # A read of the whole topic takes well under a second: take the median of a few, each with a new group.
    passes = [raw_consume(settings, settings.spans_topic, f"bench-raw-{suffix}-{n}") for n in range(RAW_PASSES)]
    messages_read, size, seconds = raw = sorted(passes, key=lambda r: r[2])[len(passes) // 2]
    print(f"raw consume            {messages_read / seconds:,.0f} messages/s = {args.spans / seconds:,.0f} spans/s "
          f"({messages_read:,} messages, {size / seconds / 1e6:,.0f} MB/s of values; median of {RAW_PASSES} reads "
          "taking " + ", ".join(f"{r[2]:.2f} s" for r in passes) + ")", flush=True)
    return produced, raw


def report_end_to_end(args: argparse.Namespace, e2e: EndToEnd) -> None:
    print(f"end to end             {args.spans / e2e.seconds:,.0f} spans/s ({e2e.seconds:.1f} s from readiness to "
          f"a matching summary; {e2e.spans_at_ready:,} spans visible at readiness)")
    if e2e.steady_seconds > 0:
        print(f"  after first spans    {(args.spans - e2e.spans_at_first) / e2e.steady_seconds:,.0f} spans/s "
              f"({e2e.seconds - e2e.steady_seconds:.1f} s to the first non-zero summary, then "
              f"{e2e.steady_seconds:.1f} s)")
    complete = sum(1 for n in e2e.spans_table if n >= args.spans_per_session)
    print(f"  spans table          {complete} of {len(e2e.spans_table)} sampled sessions complete when the summary "
          f"matched (rows: {', '.join(map(str, e2e.spans_table))})")
    print(f"  resources            {describe_cpu(e2e.usage, args.spans)}")
    if e2e.profile:
        print(e2e.profile)


def report_latency(args: argparse.Namespace, latency: Latency) -> None:
    watch, ms = latency.watch, latency.latencies_ms
    print(f"\nPhase B: {latency.sessions:,} sessions of {args.spans_per_session} spans offered at {args.rate:,.0f} "
          f"spans/s for {args.seconds:.0f} s")
    print(f"achieved produce rate  {latency.spans_acked / latency.produce_seconds:,.0f} spans/s "
          f"({latency.spans_acked:,} spans acked in {latency.produce_seconds:.1f} s; {latency.not_acked} not acked)")
    if ms:
        print(f"produce->visible ms    p50 {percentile(ms, 50):,.0f}   p95 {percentile(ms, 95):,.0f}   "
              f"p99 {percentile(ms, 99):,.0f}   max {ms[-1]:,.0f}   ({len(ms):,} sessions)")
    print(f"never visible          {latency.missing:,} sessions not seen complete within {GRACE_S:.0f} s of the "
          "last ack" + (f"; of {latency.missing_checked} looked up one by one afterwards, "
                        f"{latency.missing_but_stored} were stored complete by then (late, or missed by the poll)"
                        if latency.missing else ""))
    if watch.polls:
        requests = max(1, watch.requests)
        print(f"probe ({watch.mode})        {watch.polls:,} polls ({watch.polls / (latency.usage['seconds'] + 2):.1f}/s, "
              f"{watch.poll_seconds / watch.polls * 1000:.0f} ms each on average), {watch.requests:,} list requests, "
              f"{watch.rows / requests:,.0f} sessions and {watch.response_bytes / requests / 1024:.0f} KiB an answer; "
              "errors: " + (", ".join(f"{k} {v}" for k, v in watch.errors.items()) or "none"))
    print(f"polling alone (2 s)    {describe_cpu(latency.polling_alone)}")
    print(f"during Phase B         {describe_cpu(latency.usage, latency.spans_acked)}")


def print_summary(args: argparse.Namespace, produced: Result, raw: tuple[int, int, float], e2e: EndToEnd,
                  latency: Latency) -> None:
    messages, _, raw_s = raw
    ours = args.spans / e2e.seconds
    ms = latency.latencies_ms
    rows = [
        ("producer -> Kafka, batch messages", f"{produced.spans_per_s:,.0f} spans/s", ""),
        ("raw consume, no decoding", f"{messages / raw_s:,.0f} msg/s = {args.spans / raw_s:,.0f} spans/s", ""),
        ("end to end, one process / worker", f"{ours:,.0f} spans/s", f"{LANGSIGHT_PER_WORKER} spans/s"),
        ("end to end, four workers", "", f"~{LANGSIGHT_FOUR_WORKERS:,} spans/s"),
        ("  ratio", f"{ours / LANGSIGHT_PER_WORKER:.1f}x one worker, {ours / LANGSIGHT_FOUR_WORKERS:.1f}x four", ""),
        ("  what is done per span", "sink + session fold + session sink", "ingestion; sessions are a"),
        ("", "(one `serve` process, API included)", "GROUP BY at read time"),
        ("  end to end / raw consume", f"{ours / (args.spans / raw_s):.2%}", ""),
        ("  server CPU, peak RSS", f"{e2e.usage['server_cpu'] / e2e.seconds:.2f} cores, "
                                   f"{e2e.usage['server_peak_rss_mib']:,.0f} MiB", ""),
        ("  fold worker CPU", f"{e2e.usage['fold_cpu'] / e2e.seconds:.2f} cores", ""),
        (f"produce->visible, {args.rate:,.0f} spans/s",
         f"p50 {percentile(ms, 50):,.0f} ms, p95 {percentile(ms, 95):,.0f} ms" if ms else "none visible",
         "not published: sessions are"),
        ("", f"p99 {percentile(ms, 99):,.0f} ms, max {ms[-1]:,.0f} ms" if ms else "", "a GROUP BY per query"),
        ("  never visible within 30 s", f"{latency.missing:,} of {latency.sessions:,} sessions", ""),
        ("  achieved produce rate", f"{latency.spans_acked / latency.produce_seconds:,.0f} spans/s", ""),
    ]
    print("\n" + "=" * 110)
    print(f"{'':38}{'Spanstream (this run)':<40}LangSight (published)")
    print("-" * 110)
    for name, mine, theirs in rows:
        print(f"{name:<38}{mine:<40}{theirs}".rstrip())
    print("=" * 110)


def run(args: argparse.Namespace) -> int:
    try:
        check_kafka(load_settings())
    except KafkaUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    suffix = uuid.uuid4().hex[:8]
    server = PipelineServer(suffix)
    settings = server.settings
    print(f"machine: {machine()}\nbroker: {settings.kafka_bootstrap}, on this machine")
    print(f"run {suffix}: topic {settings.spans_topic} ({settings.spans_partitions} partitions), worker "
          f"{settings.worker_id}, sink batches of {settings.sink_batch_size:,} rows or {settings.sink_batch_seconds} s")
    try:
        slug = f"bench-pipeline-{suffix}"
        key = create_key(slug)
        project_id = asyncio.run(_project_id(settings.postgres_dsn, key))
        print(f"project {slug} ({project_id}), with a new API key")

        print(f"generating {args.spans:,} spans in sessions of {args.spans_per_session} (Phase A) and "
              f"{args.rate * args.seconds:,.0f} (Phase B) ...", flush=True)
        generating = time.perf_counter()
        gc.disable()  # hundreds of thousands of live spans: the collector would rescan them all
        # An hour ago: the summary's 24 h window and the store's 90-day TTL both keep them.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        messages, sessions_a, latest_a = phase_a_messages(args.seed, args.spans, args.spans_per_session,
                                                          project_id, start, args.spans_per_message)
        sessions_b = phase_b_sessions(args.seed + 1, math.ceil(args.rate * args.seconds / args.spans_per_session),
                                      args.spans_per_session, project_id,
                                      max(latest_a, datetime.now(UTC)) + timedelta(seconds=1),
                                      timedelta(seconds=args.spans_per_session / args.rate), args.spans_per_message)
        gc.freeze()
        gc.enable()
        sample = [messages[i * (len(messages) - 1) // max(1, SPANS_SAMPLE - 1)][0].decode()
                  for i in range(SPANS_SAMPLE)]
        print(f"generated in {time.perf_counter() - generating:.1f} s: {len(messages):,} messages "
              f"({sum(len(v) for _, v, _ in messages) / len(messages) / 1024:.1f} KiB each) for Phase A, "
              f"{len(sessions_b):,} sessions for Phase B", flush=True)
        print(f"created topics {', '.join(ensure_topics(settings))}")

        produced, raw = phase_a(args, settings, messages, suffix)
        del messages
        ready_at = server.start()
        print(f"readiness answered; polling the summary until it shows {args.spans:,} spans in {sessions_a:,} "
              "sessions", flush=True)
        with httpx.Client(base_url=server.base, headers={"X-API-Key": key}, timeout=30) as http:
            e2e = wait_for_summary(server, http, ready_at, args.spans, sessions_a, sample, args.profile)
            report_end_to_end(args, e2e)
            latency = measure_latency(server, http, key, settings, sessions_b, args.rate, args.spans_per_session,
                                      args.probe)
        report_latency(args, latency)
        print(f"dead-lettered          {dead_letters(settings)} messages")
        print_derived_topics(settings, suffix, args.spans + latency.spans_acked)
        print_summary(args, produced, raw, e2e, latency)
        return 0
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        code = server.stop()
        # faust exits 0 on SIGINT after its agents have stopped; anything else deserves a look at the log.
        if code is not None:
            print(f"spanstream serve stopped (exit code {code})" + (f"; log {server.log_path}" if code else ""))
        server.clean_up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_pipeline", description=__doc__)
    parser.add_argument("--spans", type=int, default=500_000, help="Phase A spans (default 500,000)")
    parser.add_argument("--spans-per-session", type=int, default=50, help="session length (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="Phase B duration (default 30)")
    parser.add_argument("--rate", type=float, default=10_000, help="Phase B spans/s (default 10,000)")
    parser.add_argument("--spans-per-message", type=int, default=None,
                        help="split each session into messages of this many spans (default: one message per session)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", choices=MODES, default="pending",
                        help="Phase B's latency probe: list only the sessions still awaited (default), or the newest "
                             "1,000 every 50 ms (the probe before 2026-12-01 evening; it costs the server ~0.85 cores)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the server with py-spy for 10 s of Phase A into FILE (raw) and print its top frames")
    args = parser.parse_args(argv)
    if min(args.spans, args.spans_per_session) < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error("--spans, --spans-per-session, --seconds and --rate must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
