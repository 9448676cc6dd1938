"""How fast `spanstream replay` rebuilds every view from the spans topic, beside the raw consume speed.

It also prints where the CPU went: the replay process (inserts into chdb) and its fold workers
(decoding, folding, encoding rows), which on a machine with few cores compete with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer

from loadtests.generate import generate_sessions
from schemas.span import session_messages
from spanstream.clickhouse import ClickHouseStore
from spanstream.kafka import delete_topics, ensure_topics
from spanstream.migrate import migrate_clickhouse, migrate_postgres
from spanstream.producer import make_producer
from spanstream.replay import replay
from spanstream.settings import load_settings


def raw_consume(bootstrap: str, topic: str, messages: int) -> float:
    """Seconds to read `messages` messages with a fresh group and no decoding: the ceiling."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 64 * 1024 * 1024})
    consumer.subscribe([topic])
    seen, started = 0, time.perf_counter()
    while seen < messages:
        batch = consumer.consume(num_messages=2000, timeout=1.0)
        seen += sum(1 for message in batch if message.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def merges_after(store: ClickHouseStore, quiet_seconds: float = 2.0) -> tuple[float, float]:
    """CPU and wall seconds of this process until ClickHouse has run no merge for
    `quiet_seconds`: the merges of the rebuilt tables' parts still running after the swap,
    which the replay's own figures do not include."""
    began, own = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    quiet_since = time.perf_counter()
    while time.perf_counter() - quiet_since < quiet_seconds:
        time.sleep(0.1)
        if store.query_sync("SELECT count() AS n FROM system.merges")[0]["n"]:
            quiet_since = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - own.ru_utime - own.ru_stime
    return cpu, time.perf_counter() - began - quiet_seconds


def timed(call: Callable[[], object]) -> tuple[float, float, float]:
    """Wall seconds of `call`, and the CPU seconds it took in this process and in the child
    processes it started and waited for (the fold workers)."""
    def cpu(who: int) -> float:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    own, children, began = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    call()
    return (time.perf_counter() - began, cpu(resource.RUSAGE_SELF) - own,
            cpu(resource.RUSAGE_CHILDREN) - children)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_replay", description=__doc__)
    parser.add_argument("--spans", type=int, default=500_000)
    parser.add_argument("--spans-per-session", type=int, default=50)
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    settings = load_settings(data_dir=data_dir, spans_topic=f"spans-bench-replay-{suffix}",
                             sessions_topic=f"sessions-bench-{suffix}", health_topic=f"health-bench-{suffix}",
                             worker_id=f"bench-replay-{suffix}")
    ensure_topics(settings)
    asyncio.run(migrate_postgres(settings.postgres_dsn))
    sessions = args.spans // args.spans_per_session
    print(f"generating {sessions * args.spans_per_session:,} spans in {sessions:,} sessions", flush=True)
    start = datetime.now(UTC) - timedelta(hours=1)
    producer = make_producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000})
    messages = tool_calls = 0
    for session in generate_sessions(1, sessions, args.spans_per_session, "bench-replay", start):
        tool_calls += sum(span.span_type == "tool_call" and bool(span.server_name) for span in session)
        for key, value in session_messages(session):
            while True:
                try:
                    producer.produce(settings.spans_topic, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.1)
            messages += 1
        producer.poll(0)
    assert producer.flush(60) == 0, "the broker did not acknowledge every message"
    total_spans = sessions * args.spans_per_session

    raw_seconds = raw_consume(settings.kafka_bootstrap, settings.spans_topic, messages)
    store = ClickHouseStore(settings).open()
    migrate_clickhouse(store)

    def report(line: str) -> None:
        print(line, flush=True)

    try:
        replay_seconds, replay_own, replay_workers = timed(lambda: replay(settings, store, report=report))
        merge_cpu, merge_seconds = merges_after(store)
        reprice_seconds, reprice_own, reprice_workers = timed(
            lambda: replay(settings, store, reprice=True, report=report))
        reprice_merge_cpu, _ = merges_after(store)
        rows = store.query_sync("SELECT count() AS n, sum(spans) AS spans FROM sessions FINAL")[0]
        calls = store.query_sync("SELECT uniqExactMerge(calls) AS n FROM mcp_server_stats")[0]["n"]
    finally:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        delete_topics(settings)
    assert rows["n"] == sessions and rows["spans"] == total_spans, rows
    assert calls == tool_calls, (calls, tool_calls)

    print(f"\n{total_spans:,} spans in {messages:,} messages ({args.spans_per_session} spans per session message)")
    print(f"{'raw consume (no decoding)':<40} {total_spans / raw_seconds:>12,.0f} spans/s   {raw_seconds:6.1f} s")
    print(f"{'replay, every view':<40} {total_spans / replay_seconds:>12,.0f} spans/s   {replay_seconds:6.1f} s"
          f"   {raw_seconds / replay_seconds:.2f}x of raw")
    print(f"{'replay --reprice (session views)':<40} {total_spans / reprice_seconds:>12,.0f} spans/s   "
          f"{reprice_seconds:6.1f} s   {raw_seconds / reprice_seconds:.2f}x of raw")
    print(f"\nCPU seconds on {len(os.sched_getaffinity(0))} cores: replay {replay_own:.1f} in the replay process + "
          f"{replay_workers:.1f} in its fold workers; --reprice {reprice_own:.1f} + {reprice_workers:.1f}")
    print(f"merges after the swap (while the views already serve): {merge_cpu:.1f} CPU-s over {merge_seconds:.1f} s; "
          f"after --reprice {reprice_merge_cpu:.1f} CPU-s")


if __name__ == "__main__":
    main()
