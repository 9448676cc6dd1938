"""The price book read from the real PostgreSQL, and a running worker's copy picking up new prices."""

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from streams.pricing import SpanPrice
from streams.pricing_source import PriceBookRefresher, load_price_book
from tests.conftest import free_port

pytestmark = pytest.mark.anyio

FALLBACK = Decimal("0.01")
MILLION = 1_000_000


async def _execute(dsn: str, *statements: tuple) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            for sql, *args in statements:
                await connection.execute(sql, *args)
    finally:
        await connection.close()


_INSERT = """INSERT INTO model_pricing (provider, model_id, display_name, input_usd_per_mtok, output_usd_per_mtok,
                 cache_read_usd_per_mtok, cache_creation_usd_per_mtok, thinking_usd_per_mtok, effective_from, effective_to)
             VALUES ('test', $1, $1, $2, $3, $2, $2, $3, $4, $5)"""


def _price_row(model: str, input: str, output: str, start: datetime, end: datetime | None = None) -> tuple:
    return (_INSERT, model, Decimal(input), Decimal(output), start, end)


def _new_model() -> str:
    return f"test-model-{uuid.uuid4().hex[:12]}"


async def test_the_seeded_prices_price_a_known_model(postgres_dsn):
    book = await load_price_book(postgres_dsn, FALLBACK)
    at = datetime(2025, 10, 1, tzinfo=UTC)
    sonnet = book.price("us.anthropic.claude-sonnet-4-5-20250929-v1:0", at, input_tokens=MILLION, output_tokens=MILLION)
    assert sonnet == SpanPrice((3 + 15) * 10**9, True, "claude-sonnet-4-5")
    assert book.price("gpt-4o-mini-2024-07-18", at, input_tokens=MILLION).nano_usd == 150_000_000
    # o3's price cut is seeded as two rows.
    assert book.price("o3", datetime(2025, 5, 1, tzinfo=UTC), output_tokens=MILLION).nano_usd == 40 * 10**9
    assert book.price("o3", at, output_tokens=MILLION).nano_usd == 8 * 10**9


async def test_a_new_price_reaches_the_refresher_and_earlier_spans_keep_the_old_one(postgres_dsn):
    model = _new_model()
    change = datetime(2026, 3, 1, tzinfo=UTC)
    before, after = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    await _execute(postgres_dsn, _price_row(model, "1", "2", datetime(2025, 1, 1, tzinfo=UTC)))
    refresher = await PriceBookRefresher.load(postgres_dsn, FALLBACK, interval=0.05)
    assert refresher.book.price(model, after, input_tokens=MILLION).nano_usd == 10**9

    # How docs/pricing.md says to change a price: close the old row, open a new one.
    await _execute(
        postgres_dsn,
        ("UPDATE model_pricing SET effective_to = $2 WHERE model_id = $1 AND effective_to IS NULL", model, change),
        _price_row(model, "5", "6", change),
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(refresher.run(stop))
    try:
        async with asyncio.timeout(10):
            while refresher.book.price(model, after, input_tokens=MILLION).nano_usd == 10**9:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 5)

    book = refresher.book
    assert book.price(model, after, input_tokens=MILLION) == SpanPrice(5 * 10**9, True, model)
    assert book.price(f"{model}-20260401", after, output_tokens=MILLION) == SpanPrice(6 * 10**9, True, model)
    assert book.price(model, before, input_tokens=MILLION) == SpanPrice(10**9, True, model)


async def test_an_unreachable_postgres_keeps_the_old_book_and_warns(postgres_dsn, caplog):
    model = _new_model()
    await _execute(postgres_dsn, _price_row(model, "1", "2", datetime(2025, 1, 1, tzinfo=UTC)))
    book = await load_price_book(postgres_dsn, FALLBACK)
    refresher = PriceBookRefresher(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/nowhere", book, interval=60)

    with caplog.at_level(logging.WARNING, logger="streams.pricing_source"):
        assert await refresher.refresh() is False
    assert refresher.book is book
    assert refresher.failed_refreshes == 1
    assert "still using the previous prices" in caplog.text
    assert "secret" not in caplog.text
    assert refresher.book.price(model, datetime(2026, 1, 1, tzinfo=UTC), input_tokens=MILLION).priced


async def test_run_returns_when_stopped(postgres_dsn):
    refresher = await PriceBookRefresher.load(postgres_dsn, FALLBACK, interval=3600)
    stop = asyncio.Event()
    runner = asyncio.create_task(refresher.run(stop))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_overlapping_prices_for_one_model_are_refused(postgres_dsn):
    model = _new_model()
    await _execute(postgres_dsn, _price_row(model, "1", "2", datetime(2025, 1, 1, tzinfo=UTC)))
    with pytest.raises(asyncpg.ExclusionViolationError):
        await _execute(postgres_dsn, _price_row(model, "3", "4", datetime(2025, 6, 1, tzinfo=UTC)))
    with pytest.raises(asyncpg.CheckViolationError):
        day = datetime(2025, 1, 1, tzinfo=UTC)
        await _execute(postgres_dsn, _price_row(_new_model(), "1", "2", day, day))
    with pytest.raises(asyncpg.CheckViolationError):
        await _execute(postgres_dsn, _price_row(f"openai/{model}", "1", "2", datetime(2025, 1, 1, tzinfo=UTC)))
