"""How many MCP servers one prober keeps on schedule, and what a probe costs per transport.

Registers `--http` servers (all pointing at one streamable-HTTP test server) and `--stdio` servers
(each probe starts tests/mcp_test_server.py) in a scratch database, runs one Prober in this process
for `--seconds`, and reads what it published to a scratch `health.checks` topic: checks per
second, the gap between a server's checks against its interval, latency by transport, and the CPU
this process used.

    .venv/bin/python -m loadtests.bench_probe --http 200 --stdio 4 --interval 5 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
from confluent_kafka import Consumer

from api.repositories.mcp_servers import create_server
from api.repositories.projects import ensure_project
from spanstream.kafka import delete_topics, ensure_topics
from spanstream.migrate import migrate_postgres
from spanstream.prober import Prober
from spanstream.settings import load_settings

SERVER_SCRIPT = str(Path(__file__).resolve().parent.parent / "tests" / "mcp_test_server.py")


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _setup(dsn: str, admin_dsn: str, database: str, args, tools: Path, port: int) -> None:
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    await migrate_postgres(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    project = await ensure_project(pool, "bench")
    common = {"env": {}, "headers": {}, "interval_seconds": args.interval, "timeout_seconds": 30,
              "degraded_after_ms": 10_000, "enabled": True}
    for i in range(args.http):
        await create_server(pool, project.id, {**common, "name": f"http-{i}", "transport": "streamable_http",
                                               "command": None, "args": [], "url": f"http://127.0.0.1:{port}/mcp"})
    for i in range(args.stdio):
        await create_server(pool, project.id, {**common, "name": f"stdio-{i}", "transport": "stdio", "url": None,
                                               "command": sys.executable, "args": [SERVER_SCRIPT, "stdio", "--tools", str(tools)]})
    await pool.close()


async def _drop(admin_dsn: str, database: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=200)
    parser.add_argument("--stdio", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    base = load_settings()
    suffix = uuid.uuid4().hex[:8]
    database = f"spanstream_bench_probe_{suffix}"
    dsn = base.postgres_dsn.rsplit("/", 1)[0] + f"/{database}"
    settings = load_settings(postgres_dsn=dsn, health_checks_topic=f"bench-health-checks-{suffix}",
                             spans_topic=f"bench-probe-spans-{suffix}", sessions_topic=f"bench-probe-sessions-{suffix}",
                             health_topic=f"bench-probe-health-{suffix}", worker_id=f"bench-probe-{suffix}",
                             probe_refresh_seconds=1.0, probe_concurrency=args.concurrency, probe_stdio=True)
    tools = Path(tempfile.mkdtemp()) / "tools.json"
    tools.write_text(json.dumps([{"name": "search", "description": "Search", "params": ["q"]}, {"name": "fetch", "params": ["url"]}]))
    port = 18000 + int(suffix[:4], 16) % 2000
    server = subprocess.Popen([sys.executable, SERVER_SCRIPT, "http", "--port", str(port), "--tools", str(tools)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ensure_topics(settings)
    try:
        time.sleep(5)  # the test server imports the SDK
        asyncio.run(_setup(dsn, base.postgres_dsn.rsplit("/", 1)[0] + "/postgres", database, args, tools, port))
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)

        async def run() -> None:
            stopping = asyncio.Event()
            task = asyncio.ensure_future(Prober(settings).run(stopping))
            await asyncio.sleep(args.seconds)
            stopping.set()
            await task

        asyncio.run(run())
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        records = _read_all(settings)
    finally:
        server.kill()
        server.wait()
        delete_topics(settings)
        asyncio.run(_drop(base.postgres_dsn.rsplit("/", 1)[0] + "/postgres", database))

    by_server: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_server[record["server_name"]].append(record)
    gaps = defaultdict(list)
    latency = defaultdict(list)
    statuses = defaultdict(int)
    for name, checks in by_server.items():
        kind = name.split("-")[0]
        times = sorted(time_of(c) for c in checks)
        gaps[kind] += [b - a for a, b in zip(times, times[1:])]
        latency[kind] += [c["latency_ms"] for c in checks if c["latency_ms"] is not None]
        for c in checks:
            statuses[(kind, c["status"])] += 1
    print(f"{args.http} http + {args.stdio} stdio servers, interval {args.interval:g} s, {args.seconds:g} s, "
          f"concurrency {args.concurrency}: {len(records)} checks, {len(records) / args.seconds:.1f}/s")
    for kind in sorted(gaps):
        print(f"  {kind:5}: gap between checks p50 {_quantile(gaps[kind], 0.5):.2f} s p99 {_quantile(gaps[kind], 0.99):.2f} s; "
              f"latency p50 {_quantile(latency[kind], 0.5):.1f} ms p99 {_quantile(latency[kind], 0.99):.1f} ms; "
              f"{dict((s, n) for (k, s), n in statuses.items() if k == kind)}")
    own = (cpu.ru_utime + cpu.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    kids = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    print(f"  CPU: prober process {own:.1f} s ({own / args.seconds * 100:.0f} % of a core), "
          f"stdio children {kids:.1f} s; servers never checked: {args.http + args.stdio - len(by_server)}")
    every_gap = [g for v in gaps.values() for g in v]
    if every_gap:
        print(f"  mean gap {statistics.mean(every_gap):.2f} s")


def time_of(check: dict) -> float:
    from datetime import datetime
    return datetime.fromisoformat(check["checked_at"]).timestamp()


def _read_all(settings) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.health_checks_topic])
    records, idle_since = [], time.monotonic()
    while time.monotonic() - idle_since < 5:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            records.append(json.loads(message.value()))
            idle_since = time.monotonic()
    consumer.close()
    return records


if __name__ == "__main__":
    main()
