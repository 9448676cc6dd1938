"""`spanstream replay`: rebuilds the derived views from the retained `spans` topic.

Reads the topic from the start, up to the end offsets it finds when it starts, folds with the
same pure step as the live worker (streams.session_step), writes fresh `<view>__replay` tables
(and builds `mcp_server_stats__replay` from the rebuilt spans, since its materialized view only
sees inserts into `spans`), and then swaps each with the live table in one atomic EXCHANGE.
Readers keep querying the live tables until the swap. `--reprice` rebuilds only the views that
carry costs (sessions, session_costs, session_health), at the prices in force now. `--from`
rebuilds in place only the sessions with spans since a moment, each from all its spans.

Decoding and folding run in worker processes, one share of the partitions each
(spanstream/replay_pool.py, spanstream/replay_worker.py); this process, the only one with the
store open, inserts what they hand it and prints the progress of all of them.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from spanstream.clickhouse import ClickHouseStore
from spanstream.replay_pool import FoldWorkers
from spanstream.replay_scan import offset_ranges, replay_consumer, scan, start_offsets
from spanstream.replay_store import MCP_STATS, SUFFIX, fresh_tables, rebuild_mcp_server_stats, swap_in
from spanstream.replay_worker import FoldJob
from spanstream.settings import Settings
from streams.health import rules_from_budgets
from streams.pricing_source import load_price_book

SPAN_VIEWS = ("spans",)
SESSION_VIEWS = ("sessions", "session_costs", "session_health")
# Rows per insert from each worker: fewer, larger parts for ClickHouse to merge (25,000 cost
# the parent a quarter more CPU), at ~20 MB of spans a body.
FLUSH_ROWS = 50_000


@dataclass
class Progress:
    """What replay has done so far; printed every second."""

    total_messages: int
    messages: int = 0
    spans: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, messages: int, spans: int) -> None:
        self.messages += messages
        self.spans += spans

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.spans / elapsed
        left = self.total_messages - self.messages
        eta = left / (self.messages / elapsed) if self.messages else float("inf")
        percent = 100 * self.messages / self.total_messages if self.total_messages else 100.0
        return (f"replay: {self.messages:,}/{self.total_messages:,} messages ({percent:.1f}%), "
                f"{self.spans:,} spans, {rate:,.0f} spans/s, ETA {eta:.0f} s")


def _shares(sizes: dict[int, int], workers: int) -> list[list[int]]:
    """Partitions dealt out so that each worker has about as many messages to read."""
    shares: list[list[int]] = [[] for _ in range(min(workers, len(sizes)))]
    loads = [0] * len(shares)
    for partition in sorted(sizes, key=lambda p: -sizes[p]):
        least = loads.index(min(loads))
        shares[least].append(partition)
        loads[least] += sizes[partition]
    return shares


def _every_second(call: Callable[[], None]) -> Callable[[], None]:
    last = time.monotonic()

    def tick() -> None:
        nonlocal last
        if time.monotonic() - last >= 1.0:
            call()
            last = time.monotonic()
    return tick


def _offsets(settings: Settings, group_id: str, since: datetime | None, report: Callable[[str], None],
             after: dict[int, int] | None = None
             ) -> tuple[dict[int, tuple[int, int]], dict[int, int] | None, frozenset[bytes] | None]:
    """Each partition's range to replay; with `since` (a time) or `after` (each partition's
    offset), also each partition's first offset since then, and the sessions (message keys are
    session ids) with spans published since then."""
    topic = settings.spans_topic
    consumer = replay_consumer(settings.kafka_bootstrap, group_id)
    try:
        ranges = offset_ranges(consumer, topic)
        if since is None and after is None:
            return ranges, None, None
        ends = {p: high for p, (_, high) in ranges.items()}
        if after is not None:
            since_offsets = {p: min(after.get(p, low), high) for p, (low, high) in ranges.items()}
        else:
            since_offsets = start_offsets(consumer, topic, ends, since)
        first = Progress(total_messages=sum(ends[p] - since_offsets[p] for p in ends))
        affected = set()

        def note_key(message) -> None:
            affected.add(message.key())
            first.add(1, 0)

        scan(consumer, topic, since_offsets, ends, note_key, _every_second(lambda: report(first.line())))
        report(f"replay: {len(affected):,} sessions have spans since "
               + (since.isoformat() if since else "the rebuild began"))
        return ranges, since_offsets, frozenset(affected)
    finally:
        consumer.close()


def replay(settings: Settings, store: ClickHouseStore, reprice: bool = False, since: datetime | None = None,
           report: Callable[[str], None] = print, workers: int | None = None,
           after: dict[int, int] | None = None) -> Progress:
    """Rebuilds the views. With `since`, rebuilds in place only the sessions that have a span
    published at or after it, each from all its retained spans, and re-writes those spans;
    sessions untouched since then stay as they are (`after`: the same from each partition's
    offset). Re-writing is idempotent: the tables replace on their keys and a rebuilt session
    has the version the worker gave it. `workers` fold processes (default: one per core) share
    the partitions."""
    in_place = since is not None or after is not None
    views = SESSION_VIEWS if reprice else SPAN_VIEWS + SESSION_VIEWS
    count = workers or len(os.sched_getaffinity(0))
    group_id = f"{settings.worker_id}-replay-{uuid.uuid4().hex[:8]}"
    # Workers end before their directory goes, so none is left writing into a removed one.
    with (tempfile.TemporaryDirectory(prefix="spanstream-replay-") as body_dir,
          FoldWorkers(count, settings.kafka_bootstrap, group_id, settings.spans_topic) as pool):
        book = asyncio.run(load_price_book(settings.postgres_dsn, settings.unknown_model_usd_per_call))
        rules = rules_from_budgets(settings.loop_threshold, settings.budgets)
        ranges, since_offsets, affected = _offsets(settings, group_id, since, report, after)
        if not in_place:
            fresh_tables(store, views)
        jobs = [FoldJob({p: ranges[p][0] for p in share}, {p: ranges[p][1] for p in share}, book, rules,
                        write_spans=not reprice, chunk_rows=FLUSH_ROWS, body_dir=body_dir, affected=affected,
                        since_offsets=since_offsets)
                for share in _shares({p: high - low for p, (low, high) in ranges.items()}, count)]
        progress = Progress(total_messages=sum(high - low for low, high in ranges.values()))
        sessions = pool.run(jobs, store, "" if in_place else SUFFIX, progress.add,
                            _every_second(lambda: report(progress.line())))
    report(progress.line())
    if in_place:
        report(f"replay: rebuilt {sessions:,} sessions in place")
        return progress
    if not reprice:
        rebuild_mcp_server_stats(store)
        # Right behind spans: the view feeds whichever table is named mcp_server_stats.
        views = ("spans", MCP_STATS, *SESSION_VIEWS)
    swap_in(store, views)
    report(f"replay: swapped in {', '.join(views)}; {sessions:,} sessions rebuilt")
    # While this ran, the live sinks kept writing the tables just swapped out: spans published
    # since it began, and the sessions they changed. Rebuild those sessions in place, in the
    # tables now live; from here on the live sinks write these tables themselves.
    ends = {p: high for p, (_, high) in ranges.items()}
    if _published_since(settings, group_id, ends):
        replay(settings, store, reprice=reprice, report=report, workers=workers, after=ends)
    else:
        report("replay: no spans were published while it ran")
    return progress


def _published_since(settings: Settings, group_id: str, ends: dict[int, int]) -> bool:
    consumer = replay_consumer(settings.kafka_bootstrap, group_id)
    try:
        return any(high > ends.get(p, low) for p, (low, high) in offset_ranges(consumer, settings.spans_topic).items())
    finally:
        consumer.close()
