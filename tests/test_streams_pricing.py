"""Pricing a span: id normalization and matching, the price in force at the span's start, exact integer costs."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.pricing import ModelPrice, PriceBook, SpanPrice, normalize_model_id

JAN = datetime(2025, 1, 1, tzinfo=UTC)
CUT = datetime(2025, 6, 10, tzinfo=UTC)
FALLBACK = Decimal("0.01")


def row(model_id, input, output, cache_read=None, cache_creation=None, thinking=None, start=JAN, end=None):
    return ModelPrice(
        provider="test",
        model_id=model_id,
        display_name=model_id,
        input_usd_per_mtok=Decimal(input),
        output_usd_per_mtok=Decimal(output),
        cache_read_usd_per_mtok=Decimal(cache_read if cache_read is not None else input),
        cache_creation_usd_per_mtok=Decimal(cache_creation if cache_creation is not None else input),
        thinking_usd_per_mtok=Decimal(thinking if thinking is not None else output),
        effective_from=start,
        effective_to=end,
    )


BOOK = PriceBook(
    [
        row("claude-sonnet-4-5", "3", "15", "0.30", "3.75"),
        row("claude-sonnet-4", "3", "15", "0.30", "3.75"),
        row("claude-3-5-haiku", "0.80", "4", "0.08", "1"),
        row("gpt-4o", "2.50", "10", "1.25"),
        row("gpt-4o-mini", "0.15", "0.60", "0.075"),
        row("o3", "10", "40", "2.50", end=CUT),
        row("o3", "2", "8", "0.50", start=CUT),
        row("gemini-2.5-pro", "1.25", "10", "0.31"),
        row("reasoner", "1", "4", thinking="6"),
    ],
    FALLBACK,
)
MID_2025 = datetime(2025, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "normalized"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("GPT-4o", "gpt-4o"),
        (" gpt-4o-mini ", "gpt-4o-mini"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("google/gemini-2.5-flash", "gemini-2.5-flash"),
        ("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro"),
        ("azure/gpt-4.1", "gpt-4.1"),
        ("openrouter/anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku-20241022"),
        ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("bedrock/eu.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1-20250805"),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5-20251001"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0:200k", "claude-3-5-sonnet-20240620"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        # No ":" after it: part of the name, not a Bedrock release.
        ("titan-embed-text-v1", "titan-embed-text-v1"),
    ],
)
def test_normalize_model_id_strips_provider_prefixes_and_release_suffixes(sent, normalized):
    assert normalize_model_id(sent) == normalized


@pytest.mark.parametrize(
    ("sent", "matched"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
    ],
)
def test_the_longest_known_model_id_followed_by_a_dash_is_matched(sent, matched):
    assert BOOK.price(sent, MID_2025, input_tokens=10).price_model == matched


@pytest.mark.parametrize("sent", ["gpt-4omni", "gpt-4", "claude-sonnet", "o3x-mini", "-gpt-4o", "my-own-model"])
def test_a_prefix_without_a_dash_after_it_does_not_match(sent):
    assert BOOK.price(sent, MID_2025, input_tokens=10) == SpanPrice(10_000_000, False, None)


def test_the_price_switches_at_effective_from_exactly():
    before = BOOK.price("o3", CUT - timedelta(microseconds=1), input_tokens=1_000_000)
    at_cut = BOOK.price("o3-2025-04-16", CUT, input_tokens=1_000_000)
    assert before == SpanPrice(10 * 10**9, True, "o3")
    assert at_cut == SpanPrice(2 * 10**9, True, "o3")


def test_a_span_before_the_first_price_or_after_the_last_one_ends_costs_the_fallback():
    closed = PriceBook([row("retired", "1", "2", end=CUT)], FALLBACK)
    assert closed.price("retired", JAN - timedelta(microseconds=1), input_tokens=5) == SpanPrice(10_000_000, False, None)
    assert closed.price("retired", CUT - timedelta(microseconds=1), input_tokens=1_000_000).priced
    assert closed.price("retired", CUT, input_tokens=5) == SpanPrice(10_000_000, False, None)


def test_a_naive_start_time_is_utc():
    assert BOOK.price("o3", datetime(2025, 6, 10), input_tokens=1_000_000).nano_usd == 2 * 10**9


def test_cached_input_and_thinking_are_taken_out_of_their_totals_and_charged_at_their_own_prices():
    # Sonnet 4.5 at 3 / 15 / 0.30 / 3.75 USD per million tokens:
    # 100 uncached x 3 + 1000 read x 0.30 + 100 written x 3.75 + 50 visible x 15 + 30 thinking x 15.
    price = BOOK.price("claude-sonnet-4-5-20250929", MID_2025, input_tokens=1200, output_tokens=80,
                       cache_read_tokens=1000, cache_creation_tokens=100, thinking_tokens=30)
    assert price == SpanPrice((300 + 300 + 375 + 750 + 450) * 1000, True, "claude-sonnet-4-5")
    assert price.usd == Decimal("0.002175")


def test_a_separate_thinking_price_applies_to_thinking_tokens_only():
    # 1000 visible output x 4 + 3000 thinking x 6 = 22000 USD per million.
    price = BOOK.price("reasoner", MID_2025, output_tokens=4000, thinking_tokens=3000)
    assert price.nano_usd == 22_000 * 1000


def test_parts_larger_than_their_totals_floor_the_remainder_at_zero():
    # Inconsistent producers: cache and thinking counts exceeding the totals they belong to.
    price = BOOK.price("reasoner", MID_2025, input_tokens=10, cache_read_tokens=20, output_tokens=5, thinking_tokens=8)
    assert price.nano_usd == (20 * 1 + 8 * 6) * 1000


def test_fractions_of_a_nano_dollar_round_half_to_even():
    half = PriceBook([row("tiny", "0.0005", "0.0015")], FALLBACK)  # 0.5 and 1.5 nano-USD per token
    assert [half.price("tiny", MID_2025, input_tokens=n).nano_usd for n in (1, 3, 5)] == [0, 2, 2]
    assert half.price("tiny", MID_2025, output_tokens=1).nano_usd == 2


def test_an_unknown_model_costs_the_fallback_once_and_is_flagged():
    price = BOOK.price("llama-3-70b", MID_2025, input_tokens=50_000, output_tokens=2_000)
    assert price == SpanPrice(10_000_000, False, None)
    assert price.usd == FALLBACK


def test_a_fallback_from_float_settings_is_the_decimal_it_reads_as():
    assert PriceBook([], 0.01).price("unknown", MID_2025).nano_usd == 10_000_000
    assert PriceBook([], 0.0).price("unknown", MID_2025) == SpanPrice(0, False, None)


def test_a_known_model_with_no_tokens_costs_nothing():
    assert BOOK.price("gpt-4o", MID_2025) == SpanPrice(0, True, "gpt-4o")


def test_no_model_and_no_tokens_is_nothing_to_price():
    assert BOOK.price(None, MID_2025) == SpanPrice(0, True, None)
    assert BOOK.price("", MID_2025) == SpanPrice(0, True, None)


def test_tokens_without_a_model_cost_the_fallback():
    assert BOOK.price(None, MID_2025, input_tokens=100) == SpanPrice(10_000_000, False, None)


def test_a_span_is_priced_by_its_own_fields():
    class Call:
        model_id = "gpt-4o-mini-2024-07-18"
        started_at = MID_2025
        input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens = 2000, 100, 1000, 0, 0

    # 1000 uncached x 0.15 + 1000 read x 0.075 + 100 out x 0.60 = 285 USD per million.
    assert BOOK.price_span(Call()) == SpanPrice(285_000, True, "gpt-4o-mini")


def test_overlapping_rows_of_one_model_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        PriceBook([row("m", "1", "1"), row("m", "2", "2", start=CUT)], FALLBACK)
    with pytest.raises(ValueError, match="overlap"):
        # Different spellings of one model are one model.
        PriceBook([row("m", "1", "1"), row("M", "2", "2", start=CUT)], FALLBACK)
    with pytest.raises(ValueError, match="ends"):
        PriceBook([row("m", "1", "1", start=CUT, end=CUT)], FALLBACK)


def test_rows_that_meet_at_a_boundary_are_accepted_whatever_order_they_come_in():
    book = PriceBook([row("m", "2", "2", start=CUT), row("m", "1", "1", end=CUT)], FALLBACK)
    assert book.price("m", JAN, input_tokens=10**6).nano_usd == 10**9
    assert book.price("m", CUT, input_tokens=10**6).nano_usd == 2 * 10**9


def test_the_resolution_cache_is_bounded():
    book = PriceBook([row("gpt-4o", "1", "1")], FALLBACK)
    for n in range(PriceBook.RESOLVED_LIMIT + 10):
        book.price(f"unknown-{n}", MID_2025, input_tokens=1)
    assert len(book._resolved) <= PriceBook.RESOLVED_LIMIT
    assert book.price("gpt-4o-2024-08-06", MID_2025, input_tokens=10**6).nano_usd == 10**9


prices = st.decimals(min_value=0, max_value=100, places=4)
counts = st.integers(min_value=0, max_value=10**12)


@given(prices, prices, prices, prices, prices, counts, counts, counts, counts, counts)
def test_integer_costs_equal_the_exact_decimal_cost_rounded_half_even(
    p_in, p_out, p_read, p_write, p_think, input, output, cache_read, cache_creation, thinking
):
    book = PriceBook([row("m", p_in, p_out, p_read, p_write, p_think)], FALLBACK)
    with localcontext(prec=100):
        usd = (
            max(input - cache_read - cache_creation, 0) * p_in + cache_read * p_read + cache_creation * p_write
            + max(output - thinking, 0) * p_out + thinking * p_think
        ) / 10**6
        expected = int((usd * 10**9).to_integral_value(rounding="ROUND_HALF_EVEN"))
    assert book.price("m", MID_2025, input, output, cache_read, cache_creation, thinking).nano_usd == expected


span_tokens = st.tuples(counts, counts, counts, counts, counts)
models = st.sampled_from(["claude-sonnet-4-5-20250929", "gpt-4o-mini", "o3", "unknown", None])
moments = st.datetimes(min_value=datetime(2024, 6, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC))


@given(st.lists(st.tuples(models, moments, span_tokens), max_size=40), st.randoms())
def test_costs_sum_to_the_same_total_in_any_order(spans, rnd: random.Random):
    def total(ordered):
        return sum(BOOK.price(model, at, *tokens).nano_usd for model, at, tokens in ordered)

    shuffled = list(spans)
    rnd.shuffle(shuffled)
    assert total(shuffled) == total(spans) == total(reversed(spans))
