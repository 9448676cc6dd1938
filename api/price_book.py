"""The query layer's copy of the price book, for pricing each span of a trace as it is read.

The spans table has no cost column, so a trace prices its spans with the rule the fold worker
applies (schemas/pricing.py) and the same `model_pricing` rows, reloaded at most every
`pricing_refresh_seconds`: each span's cost is the one its session's total was summed from,
as long as no price row in force back then was edited since (then `spanstream replay --reprice`
brings the session totals to the same prices).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from schemas.pricing import ModelPrice, PriceBook

_PRICE_ROWS = """SELECT id, provider, model_id, display_name, input_usd_per_mtok, output_usd_per_mtok,
    cache_read_usd_per_mtok, cache_creation_usd_per_mtok, thinking_usd_per_mtok,
    effective_from, effective_to, created_at FROM model_pricing"""


class CachedPriceBook:
    def __init__(self, refresh_seconds: float, fallback_per_call_usd: float) -> None:
        self._refresh = refresh_seconds
        self._fallback = fallback_per_call_usd
        self._book: PriceBook | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def book(self, pool: asyncpg.Pool) -> PriceBook:
        """The current book; when it is stale, one caller reloads it and the others wait for that.
        A failed reload keeps the previous book (stale prices beat no trace); with no book yet it raises."""
        if self._book is not None and time.monotonic() - self._loaded_at < self._refresh:
            return self._book
        async with self._lock:
            if self._book is not None and time.monotonic() - self._loaded_at < self._refresh:
                return self._book
            try:
                rows = await pool.fetch(_PRICE_ROWS)
                self._book = PriceBook((ModelPrice(**dict(row)) for row in rows), self._fallback)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError):
                if self._book is None:
                    raise
            self._loaded_at = time.monotonic()
            return self._book
