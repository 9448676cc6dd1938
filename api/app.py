"""Builds the FastAPI app; its lifespan opens the Postgres pool and closes it in reverse order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from fastapi import FastAPI

from api.routers import health, spans
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings


def create_app(settings: Settings, store: ClickHouseStore) -> FastAPI:
    """`store` is opened by the caller: in embedded mode the worker in the same process shares it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.pool = await stack.enter_async_context(
                asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=10)
            )
            app.state.store = store
            yield

    app = FastAPI(title="Spanstream", version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(spans.router)
    return app
