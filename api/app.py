"""Builds the FastAPI app; its lifespan opens what requests need and closes it in reverse order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from fastapi import FastAPI

from api.alerts.engine import AlertEngine
from api.alerts.feed import AlertFeed
from api.deps import KeyCache
from api.live.feed import LiveFeed
from api.metrics import DeploymentCollector, HttpMetrics, Scrape
from api.metrics import router as metrics_router
from api.errors import install_error_handlers
from api.publisher import SpanPublisher
from api.ratelimit import SpanRateLimiter
from api.replay_jobs import Replayer, ReplayJobs
from api.price_book import CachedPriceBook
from api.reader import answer_capped_queries
from api.routers import (admin, agents, alerts, audit, auth, costs, health, incidents, ingest, invites, keys, live,
                         mcp_servers, otlp, pricing, projects, servers, sessions, slos, spans, sql)
from api.validation import install_validation_handler
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings


def create_app(settings: Settings, store: ClickHouseStore | None, replayer: Replayer | None = None,
               operator_token: str | None = None) -> FastAPI:
    """`store` is opened by the caller (in embedded mode the worker in the same process shares
    it); None makes an ingestion-only API whose query endpoints answer 503. `replayer` and
    `operator_token` let an operator run a replay through this process (api/routers/admin.py)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.pool = await stack.enter_async_context(
                asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=10)
            )
            publisher = SpanPublisher(settings).start()
            stack.callback(publisher.close)
            app.state.publisher = publisher
            # Reads the derived topics from their ends (api/live/feed.py).
            app.state.live = await LiveFeed(settings).start()
            stack.callback(app.state.live.close)
            deployment = DeploymentCollector(settings, store)
            stack.callback(deployment.close)
            app.state.scrape = Scrape(deployment)
            feed = AlertFeed(settings)
            stack.callback(feed.close)
            app.state.alert_feed = feed
            app.state.alert_engine = None
            if settings.alerts_engine:
                app.state.alert_engine = await stack.enter_async_context(
                    AlertEngine(settings, app.state.pool, store, feed))
            yield

    app = FastAPI(title="Spanstream", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.keys = KeyCache(settings.api_key_cache_seconds)
    app.state.limiter = SpanRateLimiter(settings.ingest_rate_limit_spans_per_second)
    app.state.replay_jobs = ReplayJobs(replayer) if replayer is not None else None
    app.state.operator_token = operator_token
    app.state.price_book = CachedPriceBook(settings.pricing_refresh_seconds, settings.unknown_model_usd_per_call)
    answer_capped_queries(app)
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(otlp.router)
    app.include_router(spans.router)
    app.include_router(sessions.router)
    app.include_router(agents.router)
    app.include_router(costs.router)
    app.include_router(servers.router)
    app.include_router(admin.router)
    app.include_router(live.router)
    app.include_router(metrics_router)
    app.add_middleware(HttpMetrics)
    install_error_handlers(app)
    install_validation_handler(app)
    app.include_router(auth.router)
    app.include_router(projects.router)
    app.include_router(invites.router)
    app.include_router(keys.router)
    app.include_router(audit.router)
    app.include_router(slos.router)
    app.include_router(alerts.router)
    # After the rules router: /api/alerts/rules is not an incident id.
    app.include_router(incidents.router)
    app.include_router(pricing.router)
    app.include_router(sql.router)
    app.include_router(mcp_servers.router)
    return app
