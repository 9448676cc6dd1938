"""`spanstream replay`: rebuilds the derived views from the retained `spans` topic.

Reads the topic from the start with a fresh consumer group, up to the end offsets it finds when
it starts, folds with the same pure step as the live worker (streams.session_step), writes fresh
`<view>__replay` tables, and then swaps each of them with the live table in one atomic EXCHANGE.
Readers keep querying the live tables until the swap. `--reprice` rebuilds only the views that
carry costs (sessions, session_costs, session_health), at the prices in force now. `--from`
rebuilds in place only the sessions with spans since a moment, each from all its spans.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

from schemas.span import decode_message
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings
from streams.health import rules_from_budgets
from streams.pricing_source import load_price_book
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS, cost_rows, health_row, session_row
from streams.session_step import apply_spans, by_session
from streams.sessions import SessionState, session_record
from streams.sink import SPAN_COLUMNS, ClickHouseWriter, span_row

SPAN_VIEWS = ("spans",)
SESSION_VIEWS = ("sessions", "session_costs", "session_health")
SUFFIX = "__replay"
FLUSH_ROWS = 50_000


@dataclass
class Progress:
    """What replay has done so far; printed every second."""

    total_messages: int
    messages: int = 0
    spans: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.spans / elapsed
        left = self.total_messages - self.messages
        eta = left / (self.messages / elapsed) if self.messages else float("inf")
        percent = 100 * self.messages / self.total_messages if self.total_messages else 100.0
        return (f"replay: {self.messages:,}/{self.total_messages:,} messages ({percent:.1f}%), "
                f"{self.spans:,} spans, {rate:,.0f} spans/s, ETA {eta:.0f} s")


def _end_offsets(consumer: Consumer, topic: str) -> list[TopicPartition]:
    """Each partition's range [low, high) as it is now: replay stops at what exists at its start."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ranges = []
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ranges.append(TopicPartition(topic, partition, high))
    return ranges


def _fresh_tables(store: ClickHouseStore, views: tuple[str, ...]) -> None:
    for view in views:
        store.command_sync(f"DROP TABLE IF EXISTS {view}{SUFFIX}")
        store.command_sync(f"CREATE TABLE {view}{SUFFIX} AS {view}")


def _scan(consumer: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int],
          on_message: Callable[[Message], None], report: Callable[[str], None], progress: Progress,
          flush: Callable[[], None] = lambda: None) -> None:
    """Calls `on_message` for every message from `starts` up to (not including) `ends`."""
    remaining = {p: end for p, end in ends.items() if starts.get(p, end) < end}
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in remaining])
    last_report = time.monotonic()
    while remaining:
        batch = consumer.consume(num_messages=2000, timeout=1.0)
        if not batch:
            # Offsets can have gaps (compaction, transaction markers): go by position too.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        for message in batch:
            if message.error() is not None or message.partition() not in remaining:
                continue
            on_message(message)
            progress.messages += 1
            if message.offset() + 1 >= remaining[message.partition()]:
                del remaining[message.partition()]
        flush()
        if time.monotonic() - last_report >= 1.0:
            report(progress.line())
            last_report = time.monotonic()
    consumer.unassign()


def _start_offsets(consumer: Consumer, topic: str, partitions: list[int], since: datetime) -> dict[int, int]:
    """Each partition's first offset whose message timestamp is at or after `since`."""
    wanted = [TopicPartition(topic, p, int(since.timestamp() * 1000)) for p in partitions]
    found = consumer.offsets_for_times(wanted, timeout=10)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    # -1: no message that late in this partition
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


def replay(settings: Settings, store: ClickHouseStore, reprice: bool = False, since: datetime | None = None,
           report: Callable[[str], None] = print) -> Progress:
    """Rebuilds the views. With `since`, rebuilds in place only the sessions that have a span
    published at or after it, each from all its retained spans, and re-writes those spans;
    sessions untouched since then stay as they are. Re-writing is idempotent: the tables
    replace on their keys and a rebuilt session has the version the worker gave it."""
    views = SESSION_VIEWS if reprice else SPAN_VIEWS + SESSION_VIEWS
    book = asyncio.run(load_price_book(settings.postgres_dsn, settings.unknown_model_usd_per_call))
    rules = rules_from_budgets(settings.loop_threshold, settings.budgets)
    suffix = "" if since else SUFFIX
    if not since:
        _fresh_tables(store, views)
    writers = {
        "spans": ClickHouseWriter(store, f"spans{suffix}", SPAN_COLUMNS),
        "sessions": ClickHouseWriter(store, f"sessions{suffix}", SESSION_COLUMNS),
        "session_costs": ClickHouseWriter(store, f"session_costs{suffix}", COST_COLUMNS),
        "session_health": ClickHouseWriter(store, f"session_health{suffix}", HEALTH_COLUMNS),
    }
    topic = settings.spans_topic
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"{settings.worker_id}-replay-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
    })
    states: dict[bytes, SessionState] = {}

    def flush() -> None:
        for writer in writers.values():
            if len(writer) >= FLUSH_ROWS:
                asyncio.run(writer.flush())

    try:
        ends = {tp.partition: tp.offset for tp in _end_offsets(consumer, topic)}
        lows = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in ends}
        affected: set[bytes] | None = None
        since_offsets: dict[int, int] = {}
        if since:
            # Pass 1: which sessions (message keys are session ids) had spans since then.
            since_offsets = _start_offsets(consumer, topic, list(ends), since)
            affected = set()
            first = Progress(total_messages=sum(ends[p] - since_offsets[p] for p in ends))
            _scan(consumer, topic, since_offsets, ends, lambda message: affected.add(message.key()), report, first)
            report(f"replay: {len(affected):,} sessions have spans since {since.isoformat()}")
        progress = Progress(total_messages=sum(ends[p] - lows[p] for p in ends))

        def fold_message(message: Message) -> None:
            if affected is not None and message.key() not in affected:
                return
            spans, _ = decode_message(message.value())
            progress.spans += len(spans)
            if not reprice and (since is None or message.offset() >= since_offsets[message.partition()]):
                for span in spans:
                    writers["spans"].add(span_row(span))
            for key, group in by_session(spans).items():
                state = states.get(key) or states.setdefault(key, SessionState(group[0].project_id, group[0].session_id))
                step = apply_spans(state, group, book, rules, with_record=False)
                change = step.health_change
                if step.changed and change is not None and change["version"] == state.version:
                    writers["session_health"].add(health_row(change))

        _scan(consumer, topic, lows, ends, fold_message, report, progress, flush)
        for state in states.values():
            record = session_record(state, state.health_tag)
            writers["sessions"].add(session_row(record))
            for row in cost_rows(record):
                writers["session_costs"].add(row)
        for writer in writers.values():
            asyncio.run(writer.flush())
    finally:
        consumer.close()
    report(progress.line())
    if since:
        report(f"replay: rebuilt {len(states):,} sessions in place")
        return progress
    for view in views:
        # Each swap is atomic; readers see the old or the new table, never a half-built one.
        store.command_sync(f"EXCHANGE TABLES {view} AND {view}{SUFFIX}")
        store.command_sync(f"DROP TABLE {view}{SUFFIX}")
    report(f"replay: swapped in {', '.join(views)}; {len(states):,} sessions rebuilt")
    return progress
