"""How one API process's live feed holds up: N concurrent SSE clients, R spans a second produced to Kafka.

Prints the produce-to-client latency (p50, p99), how many events the least served client got
against how many were produced (no client starved), and the server's RSS and CPU over time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from api.repositories.projects import create_api_key, ensure_project
from loadtests.bench_http_ingest import _spanstream_command, process_usage
from schemas.span import Span, encode_span
from spanstream.kafka import delete_topics, ensure_topics
from spanstream.migrate import migrate_postgres
from spanstream.producer import make_producer
from spanstream.settings import Settings, load_settings

SENT_AT = b'"sent_at":'


@dataclass
class Client:
    """One SSE connection, read as raw bytes: a thousand clients in one process cannot afford
    to parse a million events a second, so each counts events (`event:` lines) and reads the
    produce time of the first event of each read, the oldest and so the slowest in it."""

    events: int = 0
    latencies: list[float] = field(default_factory=list)
    connected: bool = False
    error: str | None = None


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


async def run_client(client: Client, host: str, port: int, key: str, stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /api/live/events?types=span:new HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        tail = b""
        while not stop.is_set():
            data = await reader.read(1 << 16)
            if not data:
                client.error = client.error or "the server closed the stream"
                return
            now = time.time()
            if not client.connected:
                client.connected = b"connected" in data or b"event: " in data
                if b"event: error" in data:
                    client.error = data.decode(errors="replace")[-300:]
                    return
            joined = tail + data
            client.events += joined.count(b"event: ") - tail.count(b"event: ")
            tail = data[-16:]
            sent_at = _sent_at(data)
            if sent_at is not None:
                client.latencies.append(now - sent_at)
        writer.close()
    except (OSError, asyncio.IncompleteReadError) as error:
        client.error = f"{type(error).__name__}: {error}"


def produce(settings: Settings, project_id: str, rate: float, seconds: float, produced: list[int], done: threading.Event) -> None:
    """R single-span messages a second, spread over the partitions, each carrying its produce time."""
    producer = make_producer(settings, **{"linger.ms": 1})
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
    """Produce-to-consumer latency of a plain consumer beside the API, on the same broker: the
    part of the figure that is Kafka's (and this machine's), not the feed's."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"bench-live-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20})
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

        clients = [Client() for _ in range(args.clients)]
        stop = asyncio.Event()
        tasks = []
        for index, client in enumerate(clients):
            tasks.append(asyncio.create_task(run_client(client, "127.0.0.1", args.port, key, stop)))
            if index % 50 == 49:
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 60
        while sum(c.connected or c.error is not None for c in clients) < len(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        failed = [c.error for c in clients if c.error]
        print(f"{sum(c.connected for c in clients)} of {len(clients)} clients connected"
              + (f"; {len(failed)} failed, e.g. {failed[0]}" if failed else ""))

        produced: list[int] = []
        done = threading.Event()
        baseline: list[float] = []
        threading.Thread(target=kafka_baseline, args=(settings, baseline, done), daemon=True).start()
        await asyncio.sleep(1)
        client_cpu_start = process_usage(os.getpid()).cpu_s
        threading.Thread(target=produce, args=(settings, str(project.id), args.rate, args.seconds, produced, done),
                         daemon=True).start()
        started = time.monotonic()
        rss: list[tuple[float, int, float]] = []
        cpu_start = process_usage(server.pid).cpu_s
        last_cpu, last_at = cpu_start, started
        while not done.is_set():
            await asyncio.sleep(min(args.sample_seconds, 1.0) if not rss else args.sample_seconds)
            usage = process_usage(server.pid)
            now = time.monotonic()
            rss.append((now - started, usage.rss_kib, (usage.cpu_s - last_cpu) / (now - last_at)))
            last_cpu, last_at = usage.cpu_s, now
            print(f"  t={now - started:5.0f} s  server RSS {usage.rss_kib / 1024:7.1f} MiB  CPU {rss[-1][2]:4.0%}  "
                  f"events to clients so far {sum(c.events for c in clients):,}", flush=True)
        await asyncio.sleep(args.drain_seconds)
        stop.set()
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                stats = (await http.get(base + "/api/live/stats", headers={"X-API-Key": key})).json()
        except httpx.HTTPError as error:
            stats = f"GET /api/live/stats failed: {type(error).__name__}"
        for task in tasks:
            task.cancel()

        sent = produced[0]
        counts = sorted(c.events for c in clients)
        latencies = sorted(latency for c in clients for latency in c.latencies)
        print(f"\n{args.clients} clients, {sent:,} spans produced in {args.seconds:.0f} s ({sent / args.seconds:,.0f}/s)")
        print(f"produce to client (oldest event of each read, {len(latencies):,} samples): "
              f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
              f"max {latencies[-1] * 1000 if latencies else float('nan'):.0f} ms")
        baseline.sort()
        print(f"Kafka alone (a plain consumer in the benchmark process, every span): p50 {percentile(baseline, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(baseline, 0.99) * 1000:.0f} ms")
        print(f"events per client: min {counts[0]:,}, median {counts[len(counts) // 2]:,}, max {counts[-1]:,} "
              f"(of {sent:,}); clients with errors {sum(1 for c in clients if c.error)}")
        print(f"server: {stats}; CPU {(process_usage(server.pid).cpu_s - cpu_start) / (time.monotonic() - started):.0%} "
              f"of a core on average; the benchmark process (clients, producer) "
              f"{(process_usage(os.getpid()).cpu_s - client_cpu_start) / (time.monotonic() - started):.0%}")
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
