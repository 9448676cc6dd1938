"""Prices a span from its model and token counts, at the list price in force when it started.

Pure, and in `schemas/` because two readers need the same rule: the fold worker prices each span
as it folds a session (streams/), and the query layer prices each span of a trace when it is read
(api/, the spans table has no cost column). One implementation keeps a span's cost in a trace
summing to its session's cost.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol
from uuid import UUID

NANO_PER_USD = 10**9
# Bedrock model ids name the vendor ("anthropic.") and, for cross-region inference profiles, a
# geography before it ("us.", "eu.", "apac.", "global.", "us-gov.").
_BEDROCK_VENDOR = re.compile(r"^(?:[a-z]+(?:-[a-z]+)?\.)?anthropic\.")
# Bedrock's "-v1:0" (also "-v2:0:200k") and Vertex's "@20250929" name a release of one model.
_RELEASE_SUFFIX = re.compile(r"(?:-v\d+(?::\w+)+|@[\w.-]+)$")


def normalize_model_id(model_id: str) -> str:
    """The id a price row is stored under: lowercase, without the provider or router in front
    ("openai/", "models/", "vertex_ai/", "bedrock/us.anthropic.") and without a Bedrock or
    Vertex release suffix. Whatever precedes the last `/` is a provider or a router, never
    part of the model's name, so any such prefix goes, listed or not."""
    model = model_id.strip().lower().rsplit("/", 1)[-1]
    model = _BEDROCK_VENDOR.sub("", model, count=1)
    return _RELEASE_SUFFIX.sub("", model, count=1)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelPrice:
    """One row of `model_pricing`: a model's list prices in USD per million tokens, valid over
    [effective_from, effective_to); `effective_to` None means until further notice."""

    id: UUID | None = None
    provider: str
    model_id: str
    display_name: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cache_read_usd_per_mtok: Decimal
    cache_creation_usd_per_mtok: Decimal
    thinking_usd_per_mtok: Decimal
    effective_from: datetime
    effective_to: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SpanPrice:
    """What one span cost, in nano-USD. Integers, so that session and hourly totals are exact
    and the same whatever order spans arrive in. `priced` is False when the model had no price
    and the fallback per-call charge was used instead; `price_model` is the model id of the
    price row that was applied."""

    nano_usd: int
    priced: bool
    price_model: str | None = None

    @property
    def usd(self) -> Decimal:
        return Decimal(self.nano_usd).scaleb(-9)


class PricedCall(Protocol):
    """What pricing reads from a span (schemas.span.Span has these fields)."""

    model_id: str | None
    started_at: datetime
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int


def _divide_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return quotient


def _utc(moment: datetime) -> datetime:
    # Span times are UTC-aware; a naive time is UTC by the span contract.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True, slots=True)
class _Rates:
    """One price row as integers: nano-USD per token scaled by `scale`, so that pricing a span
    is exact integer arithmetic with no Decimal context (and no precision limit) involved."""

    ends: datetime | None
    input: int
    output: int
    cache_read: int
    cache_creation: int
    thinking: int
    scale: int

    @classmethod
    def of(cls, row: ModelPrice) -> _Rates:
        prices = (
            row.input_usd_per_mtok, row.output_usd_per_mtok, row.cache_read_usd_per_mtok,
            row.cache_creation_usd_per_mtok, row.thinking_usd_per_mtok,
        )
        for price in prices:
            if not price.is_finite() or price < 0:
                raise ValueError(f"{row.model_id}: a price must be a finite number >= 0, not {price}")
        # USD per million tokens x 1000 = nano-USD per token; digits past the third decimal
        # place are kept by scaling every rate of the row by the same power of ten.
        places = max(0, *(-price.normalize().as_tuple().exponent - 3 for price in prices))
        scaled = [int(price.scaleb(3 + places)) for price in prices]
        ends = None if row.effective_to is None else _utc(row.effective_to)
        return cls(ends, *scaled, scale=10**places)

    def nano_usd(self, input_tokens: int, output_tokens: int, cache_read_tokens: int,
                 cache_creation_tokens: int, thinking_tokens: int) -> int:
        uncached_input = max(input_tokens - cache_read_tokens - cache_creation_tokens, 0)
        visible_output = max(output_tokens - thinking_tokens, 0)
        total = (
            uncached_input * self.input
            + cache_read_tokens * self.cache_read
            + cache_creation_tokens * self.cache_creation
            + visible_output * self.output
            + thinking_tokens * self.thinking
        )
        return total if self.scale == 1 else _divide_half_even(total, self.scale)


class _Timeline:
    """The price rows of one model in time order; gaps are allowed, overlaps are not."""

    __slots__ = ("model", "starts", "rates")

    def __init__(self, model: str, rows: list[ModelPrice]) -> None:
        rows = sorted(rows, key=lambda row: _utc(row.effective_from))
        for row in rows:
            if row.effective_to is not None and _utc(row.effective_to) <= _utc(row.effective_from):
                raise ValueError(f"{model}: a price row ends ({row.effective_to}) before it starts ({row.effective_from})")
        for earlier, later in zip(rows, rows[1:]):
            if earlier.effective_to is None or _utc(earlier.effective_to) > _utc(later.effective_from):
                raise ValueError(f"{model}: price rows from {earlier.effective_from} and {later.effective_from} overlap")
        self.model = model
        self.starts = [_utc(row.effective_from) for row in rows]
        self.rates = [_Rates.of(row) for row in rows]

    def at(self, moment: datetime) -> _Rates | None:
        index = bisect_right(self.starts, moment) - 1
        if index < 0:
            return None
        rates = self.rates[index]
        if rates.ends is not None and moment >= rates.ends:
            return None
        return rates


_NOTHING_TO_PRICE = SpanPrice(0, True, None)


class PriceBook:
    """All known prices, immutable once built. The worker builds a new book when prices change
    (streams/pricing_source.py) and swaps it in whole, so a span is never priced by half of
    one book and half of another."""

    # Model ids come from producers: a producer that sends a new id on every call must not
    # grow the worker's memory without bound, so the resolution cache starts over at this size.
    RESOLVED_LIMIT = 10_000

    def __init__(self, prices: Iterable[ModelPrice], fallback_per_call_usd: Decimal | float) -> None:
        if not isinstance(fallback_per_call_usd, Decimal):
            # Through str: settings hold floats, and Decimal(0.01) is not 0.01.
            fallback_per_call_usd = Decimal(str(fallback_per_call_usd))
        by_model: dict[str, list[ModelPrice]] = {}
        for row in prices:
            by_model.setdefault(normalize_model_id(row.model_id), []).append(row)
        self._timelines = {model: _Timeline(model, rows) for model, rows in by_model.items()}
        if not fallback_per_call_usd.is_finite() or fallback_per_call_usd < 0:
            raise ValueError(f"fallback_per_call_usd must be a finite number >= 0, not {fallback_per_call_usd}")
        self.fallback_per_call_usd = fallback_per_call_usd
        fallback_nano = (fallback_per_call_usd * NANO_PER_USD).to_integral_value(ROUND_HALF_EVEN)
        self._fallback = SpanPrice(int(fallback_nano), False, None)
        self._resolved: dict[str, _Timeline | None] = {}

    @property
    def models(self) -> frozenset[str]:
        """The normalized model ids this book has prices for."""
        return frozenset(self._timelines)

    def price(self, model_id: str | None, at: datetime, input_tokens: int = 0, output_tokens: int = 0,
              cache_read_tokens: int = 0, cache_creation_tokens: int = 0, thinking_tokens: int = 0) -> SpanPrice:
        """The cost of one call to `model_id` that started `at`, at the price effective then.
        Token counts follow Span v1: input includes both cache counts, output includes
        thinking. An unknown model, or one with no price at `at`, costs the fallback."""
        if not model_id:
            if input_tokens or output_tokens or cache_read_tokens or cache_creation_tokens or thinking_tokens:
                return self._fallback
            return _NOTHING_TO_PRICE
        try:
            timeline = self._resolved[model_id]
        except KeyError:
            timeline = self._resolve(model_id)
        if timeline is None:
            return self._fallback
        rates = timeline.at(_utc(at))
        if rates is None:
            return self._fallback
        nano = rates.nano_usd(input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens)
        return SpanPrice(nano, True, timeline.model)

    def price_span(self, span: PricedCall) -> SpanPrice:
        """`price` for a span, as of its start time."""
        model_id = span.model_id
        if not model_id:
            # Most spans (tools, agents): `price`'s first answer, without the call.
            if (span.input_tokens or span.output_tokens or span.cache_read_tokens or span.cache_creation_tokens
                    or span.thinking_tokens):
                return self._fallback
            return _NOTHING_TO_PRICE
        return self.price(
            model_id, span.started_at, span.input_tokens, span.output_tokens,
            span.cache_read_tokens, span.cache_creation_tokens, span.thinking_tokens,
        )

    def _resolve(self, model_id: str) -> _Timeline | None:
        model = normalize_model_id(model_id)
        timeline = self._timelines.get(model)
        # Longest known id followed by "-": dated snapshots ("gpt-4o-mini-2024-07-18") and
        # aliases ("claude-sonnet-4-0") take their family's price; cutting at each "-" from
        # the right tries the longest candidate first, so gpt-4o-mini wins over gpt-4o.
        cut = len(model)
        while timeline is None:
            cut = model.rfind("-", 0, cut)
            if cut <= 0:
                break
            timeline = self._timelines.get(model[:cut])
        if len(self._resolved) >= self.RESOLVED_LIMIT:
            self._resolved.clear()
        self._resolved[model_id] = timeline
        return timeline

