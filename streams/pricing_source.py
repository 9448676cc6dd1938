"""Loads the price book from PostgreSQL's `model_pricing` and keeps a running worker's copy current."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import asyncpg

from streams.pricing import ModelPrice, PriceBook

log = logging.getLogger(__name__)

_PRICE_ROWS = """
    SELECT id, provider, model_id, display_name, input_usd_per_mtok, output_usd_per_mtok,
           cache_read_usd_per_mtok, cache_creation_usd_per_mtok, thinking_usd_per_mtok,
           effective_from, effective_to, created_at
    FROM model_pricing
"""
# A refresh that cannot reach PostgreSQL gives up well within a typical interval, so the next
# attempt is not queued behind a hung one.
_CONNECT_TIMEOUT_SECONDS = 10
_QUERY_TIMEOUT_SECONDS = 10


async def load_price_book(dsn: str, fallback_per_call_usd: Decimal | float) -> PriceBook:
    """Every price row, past and future ones included: spans are priced as of their own start
    time, so a replayed or late span needs the row that was in force back then."""
    connection = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT_SECONDS, command_timeout=_QUERY_TIMEOUT_SECONDS)
    try:
        rows = await connection.fetch(_PRICE_ROWS)
    finally:
        await connection.close()
    return PriceBook((ModelPrice(**dict(row)) for row in rows), fallback_per_call_usd)


class PriceBookRefresher:
    """Holds the worker's current PriceBook and reloads it every `interval` seconds, so a price
    row inserted into PostgreSQL reaches a running worker without a restart. When a reload
    fails (PostgreSQL down, rows that do not make a valid book) the previous book stays in use
    and a warning is logged: stale prices beat stopping the stream or pricing nothing.

    Build it with `load`, which fails at start-up if the first book cannot be read."""

    def __init__(self, dsn: str, book: PriceBook, interval: float = 60.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, not {interval}")
        self._dsn = dsn
        self._book = book
        self.interval = interval
        self.failed_refreshes = 0

    @classmethod
    async def load(cls, dsn: str, fallback_per_call_usd: Decimal | float, interval: float = 60.0) -> PriceBookRefresher:
        return cls(dsn, await load_price_book(dsn, fallback_per_call_usd), interval)

    @property
    def book(self) -> PriceBook:
        """The book to price with now; read it per batch rather than keeping it, so refreshes apply."""
        return self._book

    async def refresh(self) -> bool:
        """Loads the book once; True if it was replaced, False if the old one was kept."""
        try:
            book = await load_price_book(self._dsn, self._book.fallback_per_call_usd)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the old prices stay in use
            self.failed_refreshes += 1
            where = self._dsn.rsplit("@", 1)[-1]  # never log a password
            log.warning(
                "could not reload model prices from %s (%s: %s); still using the previous prices",
                where, type(error).__name__, error,
            )
            return False
        self._book = book
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Refreshes every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                await self.refresh()
