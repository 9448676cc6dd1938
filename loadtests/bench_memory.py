"""Fold worker memory with N open sessions (default 1,000,000), beside the raw consume speed."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from schemas.span import Span, encode_span
from spanstream.kafka import delete_topics, ensure_topics
from spanstream.producer import make_producer
from spanstream.settings import load_settings


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def produced(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    consumer.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_memory", description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--store", default="rocksdb://", help="Faust table store (rocksdb:// or memory://)")
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = {"SPANSTREAM_DATA_DIR": str(data_dir), "SPANSTREAM_SPANS_TOPIC": f"spans-mem-{suffix}",
           "SPANSTREAM_SESSIONS_TOPIC": f"sessions-mem-{suffix}", "SPANSTREAM_HEALTH_TOPIC": f"health-mem-{suffix}",
           "SPANSTREAM_WORKER_ID": f"mem-{suffix}", "SPANSTREAM_TABLE_STORE": args.store}
    settings = load_settings(**{key.removeprefix("SPANSTREAM_").lower(): value for key, value in env.items()})
    ensure_topics(settings)

    # Open sessions: one LLM span each, no root agent span ended.
    started = datetime.now(UTC) - timedelta(minutes=10)
    producer = make_producer(settings, **{"linger.ms": 50})
    began = time.perf_counter()
    for index in range(args.sessions):
        span = Span(project_id="bench-memory", session_id=f"open-{index:07d}", span_id=f"s-{index:07d}",
                    span_type="llm", model_id="gpt-4o-mini", input_tokens=900, output_tokens=120,
                    agent_name="planner", started_at=started)
        while True:
            try:
                producer.produce(settings.spans_topic, key=span.session_id.encode(), value=encode_span(span))
                break
            except BufferError:
                producer.poll(0.1)
        if index % 100_000 == 0:
            print(f"published {index:,}/{args.sessions:,}", flush=True)
        producer.poll(0)
    assert producer.flush(120) == 0
    print(f"published {args.sessions:,} sessions in {time.perf_counter() - began:.1f} s", flush=True)

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"raw-{suffix}",
                         "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10})
    consumer.subscribe([settings.spans_topic])
    seen, began = 0, time.perf_counter()
    while seen < args.sessions:
        seen += sum(1 for message in consumer.consume(2000, 1.0) if message.error() is None)
    raw_seconds = time.perf_counter() - began
    consumer.close()

    fold = subprocess.Popen([sys.executable, "-m", "spanstream.cli", "fold"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, began, done_at = 0.0, time.perf_counter(), None
    try:
        while done_at is None or time.perf_counter() - done_at < 10:
            time.sleep(1)
            peak = max(peak, rss_mib(fold.pid))
            out = produced(settings.kafka_bootstrap, settings.sessions_topic)
            if done_at is None and out >= args.sessions:
                done_at = time.perf_counter()
            print(f"  [{time.perf_counter() - began:6.1f} s] {out:>9,}/{args.sessions:,} sessions folded, "
                  f"fold RSS {rss_mib(fold.pid):,.0f} MiB (peak {peak:,.0f})", flush=True)
            if fold.poll() is not None:
                sys.exit(f"the fold worker exited with {fold.returncode}")
            if time.perf_counter() - began > 1800:
                sys.exit("gave up after 30 minutes")
        settled = rss_mib(fold.pid)
    finally:
        fold.terminate()
        fold.wait(60)
        delete_topics(settings)
        shutil.rmtree(data_dir, ignore_errors=True)
    fold_seconds = done_at - began
    print(f"\n{args.sessions:,} open sessions, table store {args.store}")
    print(f"raw consume (no decoding)   {args.sessions / raw_seconds:>10,.0f} spans/s")
    print(f"fold worker (incl. start)   {args.sessions / fold_seconds:>10,.0f} spans/s   {fold_seconds:.0f} s")
    print(f"fold worker RSS             peak {peak:,.0f} MiB, 10 s after the last session {settled:,.0f} MiB")


if __name__ == "__main__":
    main()
