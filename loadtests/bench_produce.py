"""How fast one producer process publishes Span v1 to Kafka: empty payloads, one span per message, batch messages."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from loadtests.generate import generate_session, generate_sessions
from schemas.span import Span, encode_span, encode_spans
from spanstream.kafka import KafkaUnavailable, check_kafka
from spanstream.producer import make_producer
from spanstream.settings import Settings, load_settings

PARTITIONS = 6
PROJECT_ID = "bench"
FLUSH_TIMEOUT_S = 120.0
# A message: its key (the session), its value, and how many spans it carries.
Message = tuple[bytes, bytes, int]


@dataclass
class Tally:
    """What the delivery and statistics callbacks have seen of one variant."""

    acked: int = 0
    failures: list[KafkaError] = field(default_factory=list)
    wire_bytes: int = 0  # librdkafka's tx_bytes: compressed, with protocol framing
    stats_seen: int = 0

    def delivered(self, error: KafkaError | None, _message) -> None:
        if error is None:
            self.acked += 1
        else:
            self.failures.append(error)

    def statistics(self, stats_json: str) -> None:
        self.wire_bytes = json.loads(stats_json)["tx_bytes"]
        self.stats_seen += 1


@dataclass
class Result:
    variant: str
    spans: int
    messages: int
    seconds: float
    payload_bytes: int
    wire_bytes: int
    failures: list[KafkaError]

    @property
    def spans_per_s(self) -> float:
        return self.spans / self.seconds


def raw_messages(sessions: list[list[Span]]) -> Iterator[Message]:
    """The ceiling: as many messages as spans, same keys, nothing to encode or carry."""
    for session in sessions:
        for span in session:
            yield span.session_id.encode(), b"", 1


def single_messages(sessions: list[list[Span]]) -> Iterator[Message]:
    for session in sessions:
        for span in session:
            yield span.session_id.encode(), encode_span(span), 1


def batch_messages(sessions: list[list[Span]], batch_size: int) -> Iterator[Message]:
    for session in sessions:
        key = session[0].session_id.encode()
        for offset in range(0, len(session), batch_size):
            chunk = session[offset : offset + batch_size]
            yield key, encode_spans(chunk), len(chunk)


def publish(settings: Settings, topic: str, variant: str, messages: Iterator[Message], total_spans: int) -> Result:
    """Publishes with the production producer config; the clock runs from the first produce
    (encoding included) until the broker has acknowledged the last message."""
    tally = Tally()
    producer = make_producer(
        settings, on_delivery=tally.delivered, stats_cb=tally.statistics, **{"statistics.interval.ms": 1000}
    )
    # Connect and fetch the topic's leaders before the clock starts.
    producer.list_topics(topic, timeout=10)
    produce, poll = producer.produce, producer.poll
    spans = sent = payload_bytes = 0
    started = time.perf_counter()
    next_report = started + 1.0
    for key, value, count in messages:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.01)  # the local queue is full: serve deliveries until there is room
        poll(0)
        spans += count
        sent += 1
        payload_bytes += len(value)
        if sent & 255 == 0 and (now := time.perf_counter()) >= next_report:
            next_report = now + 1.0
            print(f"  {variant:>6}: {spans:>10,}/{total_spans:,} spans produced, {tally.acked:>10,} messages acked, "
                  f"{spans / (now - started):>10,.0f} spans/s", flush=True)
    deadline = time.perf_counter() + FLUSH_TIMEOUT_S
    while (remaining := producer.flush(1.0)) and time.perf_counter() < deadline:
        print(f"  {variant:>6}: flushing, {remaining:,} messages not yet acknowledged", flush=True)
    seconds = time.perf_counter() - started
    # tx_bytes is only reported every statistics interval: wait for one taken after the flush.
    seen = tally.stats_seen
    stats_deadline = time.perf_counter() + 2.5
    while tally.stats_seen < seen + 1 and time.perf_counter() < stats_deadline:
        poll(0.1)
    failures = list(tally.failures)
    if remaining:
        failures.append(KafkaError(KafkaError._MSG_TIMED_OUT, f"{remaining} messages still queued after flush"))
    if tally.acked + len(tally.failures) + remaining != sent:
        failures.append(KafkaError(KafkaError._FAIL, f"{sent} sent but {tally.acked} acknowledged"))
    return Result(variant, spans, sent, seconds, payload_bytes, tally.wire_bytes, failures)


def create_topic(admin: AdminClient, topic: str) -> None:
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)], operation_timeout=30)[topic].result()
    # Creation returns before every partition has a leader; producing earlier only adds retries.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        if len(partitions) == PARTITIONS and all(p.leader >= 0 for p in partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no leader for every partition after 30 s")


def delete_topic(admin: AdminClient, topic: str) -> None:
    try:
        admin.delete_topics([topic], operation_timeout=30)[topic].result()
    except KafkaException as error:
        print(f"could not delete topic {topic}: {error}", file=sys.stderr)


def bench_sessions(seed: int, spans: int, spans_per_session: int) -> list[list[Span]]:
    """Exactly `spans` spans: whole sessions, and a shorter last one if needed."""
    whole, rest = divmod(spans, spans_per_session)
    sessions = generate_sessions(seed, whole, spans_per_session, PROJECT_ID)
    if rest:
        sessions.append(generate_session(seed, whole, rest, PROJECT_ID))
    return sessions


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, confluent-kafka "
            f"{confluent_kafka.version()}, librdkafka {confluent_kafka.libversion()[0]}")


def print_table(results: list[Result]) -> None:
    raw = results[0].spans_per_s
    header = (f"{'variant':<8}{'spans':>11}{'messages':>11}{'seconds':>9}{'spans/s':>11}{'MB/s':>8}"
              f"{'wire MB/s':>11}{'vs raw':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.variant:<8}{r.spans:>11,}{r.messages:>11,}{r.seconds:>9.2f}{r.spans_per_s:>11,.0f}"
              f"{r.payload_bytes / r.seconds / 1e6:>8.1f}{r.wire_bytes / r.seconds / 1e6:>11.1f}"
              f"{r.spans_per_s / raw:>7.2f}x")
    print("MB/s: span bytes before compression (keys excluded); wire MB/s: bytes sent to the broker after lz4.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_produce", description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans per variant (default 1,000,000)")
    parser.add_argument("--batch-size", type=int, default=50, help="most spans in one batch message (default 50)")
    parser.add_argument("--spans-per-session", type=int, default=100, help="session length (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.spans, args.batch_size, args.spans_per_session) < 1:
        parser.error("--spans, --batch-size and --spans-per-session must be at least 1")

    settings = load_settings()
    try:
        check_kafka(settings)
    except KafkaUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    print(f"machine: {machine()}\nbroker: {settings.kafka_bootstrap}")

    print(f"generating {args.spans:,} spans ({args.spans_per_session} per session, seed {args.seed}) ...", flush=True)
    generating = time.perf_counter()
    # A million live objects: the collector would rescan them all during generation and the timed loops.
    gc.disable()
    sessions = bench_sessions(args.seed, args.spans, args.spans_per_session)
    gc.freeze()
    gc.enable()
    print(f"generated in {time.perf_counter() - generating:.1f} s", flush=True)

    topic = f"spanstream-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    create_topic(admin, topic)
    print(f"topic {topic}: {PARTITIONS} partitions; batch messages of up to {args.batch_size} spans")
    results: list[Result] = []
    try:
        for variant, messages in (
            ("raw", raw_messages(sessions)),
            ("single", single_messages(sessions)),
            ("batch", batch_messages(sessions, args.batch_size)),
        ):
            results.append(publish(settings, topic, variant, messages, args.spans))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        delete_topic(admin, topic)
    if not results:
        return 130

    print()
    print_table(results)
    failed = False
    for r in results:
        print(f"{r.variant}: {len(r.failures)} delivery failures" + (f", e.g. {r.failures[:3]}" if r.failures else ""))
        failed |= bool(r.failures)
    batch = next((r for r in results if r.variant == "batch"), None)
    if batch is not None:
        verdict = "met" if batch.spans_per_s >= 100_000 else "NOT met"
        print(f"target for batch messages (>= 100,000 spans/s): {verdict}")
    return 1 if failed or len(results) < 3 else 0


if __name__ == "__main__":
    sys.exit(main())
