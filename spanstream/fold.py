"""A fold worker's process: sessions, costs and health tags from spans, and the batcher that
feeds them; no analytics store, API or prober.

Kept apart from spanstream/serve.py so that a fold child imports only what it runs: the API
and the MCP prober took 3.4 of the 4.4 s it spent importing serve.py before its first span,
and `spanstream serve` starts a fold child whenever one dies.
"""

from __future__ import annotations

import asyncio
import logging

import faust
import mode

from spanstream.kafka import ensure_topics
from spanstream.metrics import serve_metrics
from spanstream.metrics_dir import process_dir
from spanstream.migrate import migrate_postgres
from spanstream.settings import Settings
from streams.agents import register_fold_agents
from streams.app import create_faust_app
from streams.batcher import SpanBatcher
from streams.on_thread import OnThread
from streams.health import rules_from_budgets
from streams.pricing_source import PriceBookRefresher

log = logging.getLogger(__name__)


class PriceRefresh(mode.Service):
    """Reloads model prices on an interval, so price changes reach the running worker."""

    def __init__(self, refresher: PriceBookRefresher, **kwargs) -> None:
        super().__init__(**kwargs)
        self._refresher = refresher
        self._stopping = asyncio.Event()

    async def on_start(self) -> None:
        self.add_future(self._refresher.run(self._stopping))

    async def on_stop(self) -> None:
        self._stopping.set()


def run_fold(settings: Settings) -> None:
    """A fold worker: sessions, costs and health from spans; no analytics store. Several may run
    at once: they share the `spans` partitions as one consumer group, and their batchers (which
    every reader of spans depends on) as another."""
    ensure_topics(settings)
    asyncio.run(migrate_postgres(settings.postgres_dsn))  # model_pricing must exist
    refresher = asyncio.run(PriceBookRefresher.load(
        settings.postgres_dsn, settings.unknown_model_usd_per_call, settings.pricing_refresh_seconds))
    if settings.metrics_port and process_dir() is None:  # a fold on its own serves its own metrics
        serve_metrics(settings.metrics_port, settings.api_host)
    app = create_faust_app(settings, settings.worker_id, f"fold-{settings.fold_index}")
    register_fold_agents(app, settings, refresher, rules_from_budgets(settings.loop_threshold, settings.budgets))
    faust.Worker(app, PriceRefresh(refresher), OnThread("spans-batcher", SpanBatcher(settings).run), loglevel="info", redirect_stdouts=False).execute_from_commandline()
