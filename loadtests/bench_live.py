"""How one API process's live feed holds up: N concurrent SSE clients, R spans a second produced to Kafka.

Prints the produce-to-client latency (p50, p99), how many events the least served client got
against how many were produced (no client starved), and the server's RSS and CPU over time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from api.live.feed import consumer_config, reader_fetch_config
from api.repositories.projects import create_api_key, ensure_project
from loadtests.bench_http_ingest import _spanstream_command, process_usage
from loadtests.bench_pipeline import _broker_pid, _cpu_of, _machine_jiffies
from schemas.span import Span, encode_span
from spanstream.kafka import delete_topics, ensure_topics
from spanstream.migrate import migrate_postgres
from spanstream.producer import make_producer
from spanstream.settings import Settings, load_settings

SENT_AT = b'"sent_at":'
# Counted in every read of every client: a longer needle is skipped through faster (three times
# faster than `event: ` here, which was half the clients' CPU). Ids start with the format version.
EVENT = b"event: span:new\nid: 1~"
HISTOGRAM_MS = 120_000  # latencies are counted per millisecond up to two minutes; later ones in the last bucket


def _sent_at(data: bytes) -> float | None:
    at = data.find(SENT_AT)
    if at < 0:
        return None
    start = end = at + len(SENT_AT)
    while end < len(data) and data[end] in b"0123456789.":
        end += 1
    if end == len(data):
        return None  # cut off by the end of the read
    return float(data[start:end])


class SseClient(asyncio.Protocol):
    """One SSE connection, read as raw bytes: a thousand clients cannot afford to parse a
    million events a second, so each counts events (`event:` lines) and reads the produce time
    of the first event of each read, the oldest and so the slowest in it. A protocol rather than
    a stream reader: no buffer between the socket and the count, one callback per read."""

    def __init__(self, request: bytes, histogram: array) -> None:
        self.request = request
        self.histogram = histogram
        self.events = 0
        self.samples = 0
        self.connected = asyncio.get_running_loop().create_future()
        self.error: str | None = None
        self._tail = b""

    def connection_made(self, transport) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.connected.done():
            if b"event: error" in data:
                self.error = data.decode(errors="replace")[-300:]
            if b"connected" in data or b"event: " in data or self.error:
                self.connected.set_result(self.error is None)
        # An event line cut by the end of the last read is counted once, here.
        self.events += data.count(EVENT) + (self._tail + data[:len(EVENT) - 1]).count(EVENT)
        self._tail = data[-(len(EVENT) - 1):]
        sent_at = _sent_at(data)
        if sent_at is not None:
            self.samples += 1
            self.histogram[min(HISTOGRAM_MS - 1, max(0, int((now - sent_at) * 1000)))] += 1

    def connection_lost(self, error) -> None:
        self.error = self.error or (f"{type(error).__name__}: {error}" if error else "the server closed the stream")
        if not self.connected.done():
            self.connected.set_result(False)


async def _run_clients(count: int, host: str, port: int, key: str, pipe, stop) -> None:
    loop = asyncio.get_running_loop()
    histogram = array("q", bytes(8 * HISTOGRAM_MS))
    request = (f"GET /api/live/events?types=span:new HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    clients: list[SseClient] = []
    for index in range(count):
        try:
            _, client = await loop.create_connection(lambda: SseClient(request, histogram), host, port)
            clients.append(client)
        except OSError as error:
            pipe.send(("failed", f"{type(error).__name__}: {error}"))
            return
        if index % 50 == 49:
            await asyncio.sleep(0.05)
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(client.connected for client in clients))
    except TimeoutError:
        pass
    errors = [client.error for client in clients if client.error]
    pipe.send(("connected", sum(c.connected.done() and c.connected.result() for c in clients), errors[:1]))
    cpu_start = time.process_time()
    while not stop.is_set():
        await asyncio.sleep(0.2)
    pipe.send(("done", [c.events for c in clients], sum(1 for c in clients if c.error),
               histogram.tobytes(), time.process_time() - cpu_start))


def client_process(count: int, host: str, port: int, key: str, pipe, stop) -> None:
    """One process of clients (a child): each process is one event loop, as a browser tab is one."""
    try:
        import uvloop  # noqa: PLC0415
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run_clients(count, host, port, key, pipe, stop))


def produce(settings: Settings, project_id: str, rate: float, seconds: float, produced: list[int], done: threading.Event) -> None:
    """R single-span messages a second, spread over the partitions, each carrying its produce time."""
    # The project's own producer settings (linger 5 ms), as SpanPublisher sends every span.
    producer = make_producer(settings)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            now = datetime.now(UTC)
            span = Span(project_id=project_id, session_id=f"bench-{sent % 500}", span_id=f"live-{sent}", span_type="llm",
                        agent_name="bench-agent", model_id="gpt-4o", input_tokens=100, output_tokens=20,
                        started_at=now, ended_at=now, sent_at=time.time())
            producer.produce(settings.spans_topic, key=span.session_id.encode(), value=encode_span(span))
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    produced.append(sent)
    done.set()


def kafka_baseline(settings: Settings, latencies: list[float], done: threading.Event) -> None:
    """Produce-to-consumer latency of a plain consumer beside the API, on the same broker and
    fetching as the feed's reader does (held for a flush interval): the part of the figure that
    is Kafka's (and this machine's), not the fan-out's."""
    consumer = Consumer(consumer_config(settings, **reader_fetch_config(settings)))
    partitions = consumer.list_topics(settings.spans_topic, timeout=10).topics[settings.spans_topic].partitions
    consumer.assign([TopicPartition(settings.spans_topic, p, OFFSET_END) for p in partitions])
    while not done.is_set():
        for message in consumer.consume(1000, 0.05):
            if message.error() is None:
                sent_at = _sent_at(message.value() + b",")
                if sent_at is not None:
                    latencies.append(time.time() - sent_at)
    consumer.close()


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def _histogram_percentile(histogram: list[int], p: float) -> str:
    total = sum(histogram)
    if not total:
        return "nan"
    rank, seen = max(1, math.ceil(total * p)), 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return f"{bucket:,}" + ("+" if bucket == HISTOGRAM_MS - 1 else "")
    raise AssertionError("unreachable")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid` by its kernel name (librdkafka names its threads;
    Python threads carry the process's name), threads of the same name summed."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name, fields = (task / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        name = f"{name.split('(', 1)[1]}" + ("" if task.name != str(pid) else " (main)")
        fields = fields.split()
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


class _BenchCpu:
    """CPU of the client processes, and of this one (producer and Kafka reader), since creation."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = pids
        self._clients = sum(process_usage(pid).cpu_s for pid in pids)
        self._self = process_usage(os.getpid()).cpu_s

    def read(self, elapsed: float) -> tuple[float, float]:
        clients = sum(usage.cpu_s for usage in map(process_usage, self._pids) if usage) - self._clients
        return clients / elapsed, (process_usage(os.getpid()).cpu_s - self._self) / elapsed


async def bench(args: argparse.Namespace) -> int:
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(spans_topic=f"spans-live-{suffix}", sessions_topic=f"sessions-live-{suffix}",
                             health_topic=f"health-live-{suffix}", health_checks_topic=f"health.checks-live-{suffix}",
                             alerts_topic=f"alerts-live-{suffix}", api_port=args.port)
    ensure_topics(settings)
    await migrate_postgres(settings.postgres_dsn)
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=1)
    project = await ensure_project(pool, f"bench-live-{suffix}")
    key = await create_api_key(pool, project.id, "bench-live", role="viewer")
    await pool.close()

    log_path = Path(tempfile.mkstemp(prefix="spanstream-live-", suffix=".log")[1])
    env = {**os.environ, "SPANSTREAM_SPANS_TOPIC": settings.spans_topic, "SPANSTREAM_SESSIONS_TOPIC": settings.sessions_topic,
           "SPANSTREAM_HEALTH_TOPIC": settings.health_topic, "SPANSTREAM_HEALTH_CHECKS_TOPIC": settings.health_checks_topic,
           "SPANSTREAM_ALERTS_TOPIC": settings.alerts_topic, "SPANSTREAM_API_PORT": str(args.port),
           "SPANSTREAM_LIVE_MAX_CLIENTS": str(max(args.clients, 1000))}
    with open(log_path, "w") as log:
        server = subprocess.Popen([*_spanstream_command(), "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/api/liveness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"`spanstream ingest` did not start:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
                return 1
            await asyncio.sleep(0.3)
        print(f"`spanstream ingest` pid {server.pid} on port {args.port}, log {log_path}")

        spawn = multiprocessing.get_context("spawn")  # not fork: this process runs an event loop and threads
        stop = spawn.Event()
        shares = [args.clients // args.client_processes + (i < args.clients % args.client_processes)
                  for i in range(args.client_processes)]
        children = []
        for share in shares:
            ours, theirs = spawn.Pipe()
            child = spawn.Process(target=client_process, args=(share, "127.0.0.1", args.port, key, theirs, stop),
                                            daemon=True)
            child.start()
            children.append((child, ours))
        connected, failed = 0, []
        for child, pipe in children:
            message = await asyncio.to_thread(pipe.recv)
            if message[0] == "failed":
                failed.append(message[1])
            else:
                connected += message[1]
                failed += message[2]
        print(f"{connected} of {args.clients} clients connected in {len(children)} processes"
              + (f"; {len(failed)} failed, e.g. {failed[0]}" if failed else ""), flush=True)

        produced: list[int] = []
        done = threading.Event()
        baseline: list[float] = []
        threading.Thread(target=kafka_baseline, args=(settings, baseline, done), daemon=True).start()
        await asyncio.sleep(1)
        bench_cpu = _BenchCpu([child.pid for child, _ in children])
        threading.Thread(target=produce, args=(settings, str(project.id), args.rate, args.seconds, produced, done),
                         daemon=True).start()
        started = time.monotonic()
        rss: list[tuple[float, int, float]] = []
        cpu_start = process_usage(server.pid).cpu_s
        threads_start = thread_cpu(server.pid)
        broker_pid = _broker_pid()
        broker_start, machine_start = _cpu_of(broker_pid), _machine_jiffies()
        last_cpu, last_at = cpu_start, started
        async with httpx.AsyncClient(timeout=30, headers={"X-API-Key": key}) as http:
            while not done.is_set():
                # Never past the end of the run: the averages printed at the end are over the run.
                period = min(args.sample_seconds, 1.0) if not rss else args.sample_seconds
                await asyncio.to_thread(done.wait, max(0.1, min(period, args.seconds + 1 - (time.monotonic() - started))))
                usage = process_usage(server.pid)
                now = time.monotonic()
                rss.append((now - started, usage.rss_kib, (usage.cpu_s - last_cpu) / (now - last_at)))
                last_cpu, last_at = usage.cpu_s, now
                try:
                    sent_so_far = (await http.get(base + "/api/live/stats")).json()["events_sent"]
                except (httpx.HTTPError, ValueError, KeyError):
                    sent_so_far = -1
                print(f"  t={now - started:5.0f} s  server RSS {usage.rss_kib / 1024:7.1f} MiB  CPU {rss[-1][2]:4.0%}  "
                      f"events handed to clients so far {sent_so_far:,}", flush=True)
            await asyncio.sleep(args.drain_seconds)
            try:
                stats = (await http.get(base + "/api/live/stats")).json()
            except httpx.HTTPError as error:
                stats = f"GET /api/live/stats failed: {type(error).__name__}"
        elapsed = time.monotonic() - started
        server_cpu = (process_usage(server.pid).cpu_s - cpu_start) / elapsed
        threads = {name: (cpu - threads_start.get(name, 0.0)) / elapsed for name, cpu in thread_cpu(server.pid).items()}
        clients_cpu, harness_cpu = bench_cpu.read(elapsed)
        broker_end, machine_end = _cpu_of(broker_pid), _machine_jiffies()
        broker_cpu = (broker_end - broker_start) / elapsed if broker_end is not None and broker_start is not None else float("nan")
        machine_busy = (machine_end[0] - machine_start[0]) / max(1, machine_end[1] - machine_start[1])
        stop.set()
        counts, with_errors, histogram = [], 0, [0] * HISTOGRAM_MS
        for child, pipe in children:
            _, events, errors, raw, _cpu = await asyncio.to_thread(pipe.recv)
            counts += events
            with_errors += errors
            for bucket, n in enumerate(array("q", raw)):
                if n:
                    histogram[bucket] += n
            child.join(10)

        sent = produced[0]
        counts.sort()
        samples = sum(histogram)
        print(f"\n{args.clients} clients, {sent:,} spans produced in {args.seconds:.0f} s ({sent / args.seconds:,.0f}/s)")
        print(f"produce to client (oldest event of each read, {samples:,} samples): "
              f"p50 {_histogram_percentile(histogram, 0.5)} ms, p99 {_histogram_percentile(histogram, 0.99)} ms, "
              f"max {_histogram_percentile(histogram, 1.0)} ms")
        baseline.sort()
        print(f"Kafka alone (a plain consumer in the benchmark process fetching as the feed does, every span): p50 {percentile(baseline, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(baseline, 0.99) * 1000:.0f} ms")
        print(f"events per client: min {counts[0]:,}, median {counts[len(counts) // 2]:,}, max {counts[-1]:,} "
              f"(of {sent:,}); clients with errors {with_errors}")
        print(f"server: {stats}")
        cores = os.cpu_count() or 1
        others = machine_busy * cores - server_cpu - broker_cpu - clients_cpu - harness_cpu
        print(f"CPU, in cores on average: server {server_cpu:.2f}; broker {broker_cpu:.2f}; the benchmark's clients "
              f"({len(children)} processes) {clients_cpu:.2f}; the benchmark's producer and Kafka reader {harness_cpu:.2f}; "
              f"everything else {others:.2f} (machine {machine_busy:.0%} busy of {cores} CPUs)")
        print("server threads, in cores: " + ", ".join(
            f"{name} {cpu:.2f}" for name, cpu in sorted(threads.items(), key=lambda item: -item[1]) if cpu >= 0.005))
        # The figure that compares across runs on a machine other work shares: what each delivery
        # (one event to one client) cost, in CPU microseconds.
        deliveries = sum(counts)
        sends = stats.get("sends") if isinstance(stats, dict) else None
        if sends:
            print(f"server sends {sends:,} ({sends / elapsed / max(1, len(counts)):.1f} a second per client): "
                  f"{server_cpu * elapsed / sends * 1e6:.1f} CPU-µs per send in the server")
        if deliveries:
            per = {name: cpu * elapsed / deliveries * 1e6 for name, cpu in
                   (("server", server_cpu), ("broker", broker_cpu), ("clients", clients_cpu))}
            print(f"CPU per delivery ({deliveries:,} deliveries): " + ", ".join(f"{k} {v:.2f} µs" for k, v in per.items()))
        if rss:
            print(f"server RSS: first {rss[0][1] / 1024:.1f} MiB, last {rss[-1][1] / 1024:.1f} MiB, "
                  f"max {max(r[1] for r in rss) / 1024:.1f} MiB")
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        delete_topics(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000, help="spans a second produced to Kafka")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client-processes", type=int, default=2,
                        help="processes the clients are spread over (as browsers are many processes)")
    parser.add_argument("--sample-seconds", type=float, default=10, help="how often server RSS and CPU are printed")
    parser.add_argument("--drain-seconds", type=float, default=3, help="after the last span, before counting")
    args = parser.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415 - the clients' loop, as the server's
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
