"""Model price rows in PostgreSQL (`model_pricing`, docs/pricing.md): list, add a price from a date, correct a row.

Global, not per project: every project's spans are priced from the same book. The stream
worker rereads the table every SPANSTREAM_PRICING_REFRESH_SECONDS, so a change here reaches
running folds within that interval; spans folded before keep their price until
`spanstream replay --reprice`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.repositories.audit import Actor, record

_COLUMNS = """id, provider, model_id, display_name, input_usd_per_mtok, output_usd_per_mtok,
              cache_read_usd_per_mtok, cache_creation_usd_per_mtok, thinking_usd_per_mtok,
              effective_from, effective_to, created_at"""
PRICE_FIELDS = ("input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok",
                "cache_creation_usd_per_mtok", "thinking_usd_per_mtok")
# Columns a correction may set; the SET clause is built from these names only.
CORRECTABLE = ("provider", "display_name", *PRICE_FIELDS, "effective_from", "effective_to")


class PriceConflict(ValueError):
    """The change would give a model two prices at one instant (answered 409)."""


class PriceInvalid(ValueError):
    """The row would be malformed, e.g. ending before it starts (answered 422)."""


def _overlap(model_id: str) -> PriceConflict:
    return PriceConflict(f"model {model_id} would have two prices in force at once: its price periods may not overlap")


async def list_prices(pool: asyncpg.Pool, model_id: str | None, current: bool, limit: int,
                      after: tuple[str, datetime, UUID] | None) -> list[dict[str, Any]]:
    """Up to `limit` rows by model and start, after the (model_id, effective_from, id) of `after`;
    `current` keeps only the rows in force now."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM model_pricing
            WHERE ($1::text IS NULL OR model_id = $1)
              AND (NOT $2 OR (effective_from <= now() AND (effective_to IS NULL OR effective_to > now())))
              AND ($3::text IS NULL OR (model_id, effective_from, id) > ($3, $4, $5))
            ORDER BY model_id, effective_from, id LIMIT $6""",
        model_id, current, *(after or (None, None, None)), limit,
    )
    return [dict(row) for row in rows]


async def add_price(pool: asyncpg.Pool, price: dict[str, Any], actor: Actor) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Opens a price for `model_id` at `effective_from`, in one transaction: the row in force then
    is closed at that instant, and the new row lasts as long as that one would have (or until the
    model's next row starts, or open-ended). Returns the new row and the closed one, if any.
    `provider` and `display_name` default to those of the model's row in force."""
    async with pool.acquire() as connection, connection.transaction():
        # Serialises concurrent adds for one model; the exclusion constraint is the backstop.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('model_pricing:' || $1))", price["model_id"])
        rows = await connection.fetch(
            f"SELECT {_COLUMNS} FROM model_pricing WHERE model_id = $1 ORDER BY effective_from", price["model_id"])
        start = price["effective_from"]
        if any(row["effective_from"] == start for row in rows):
            raise PriceConflict(f"a price for {price['model_id']} already starts at {start.isoformat()}; "
                                "correct that row with PATCH /api/pricing/{id} instead")
        in_force = next((r for r in rows if r["effective_from"] < start and (r["effective_to"] is None or r["effective_to"] > start)), None)
        later = next((r for r in rows if r["effective_from"] > start), None)
        end = in_force["effective_to"] if in_force else (later["effective_from"] if later else None)
        template = in_force or (rows[-1] if rows else None)
        provider = price.get("provider") or (template and template["provider"])
        display_name = price.get("display_name") or (template and template["display_name"])
        if not provider or not display_name:
            raise PriceInvalid(f"{price['model_id']} has no price yet: give its provider and display_name")
        closed = None
        try:
            if in_force:
                closed = dict(await connection.fetchrow(
                    f"UPDATE model_pricing SET effective_to = $2 WHERE id = $1 RETURNING {_COLUMNS}", in_force["id"], start))
            added = await connection.fetchrow(
                f"""INSERT INTO model_pricing (provider, model_id, display_name, {', '.join(PRICE_FIELDS)},
                                               effective_from, effective_to)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {_COLUMNS}""",
                provider, price["model_id"], display_name, *(price[name] for name in PRICE_FIELDS), start, end,
            )
            await record(connection, actor, "price.added", str(added["id"]), details={
                "model_id": price["model_id"], "effective_from": start.isoformat(),
                "effective_to": end.isoformat() if end else None, "closed": str(in_force["id"]) if in_force else None,
                **{name: str(price[name]) for name in PRICE_FIELDS}})
        except asyncpg.ExclusionViolationError as error:
            raise _overlap(price["model_id"]) from error
    return dict(added), closed


async def correct_price(pool: asyncpg.Pool, price_id: UUID, changes: dict[str, Any], actor: Actor) -> dict[str, Any] | None:
    """Overwrites fields of one row, for a mistyped price or date. Spans already folded keep the
    old figures until a `replay --reprice`."""
    names = [name for name in CORRECTABLE if name in changes]
    if not names:
        row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM model_pricing WHERE id = $1", price_id)
        return dict(row) if row else None
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    try:
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"UPDATE model_pricing SET {assignments} WHERE id = $1 RETURNING {_COLUMNS}",
                price_id, *(changes[name] for name in names),
            )
            if row is not None:
                await record(connection, actor, "price.corrected", str(price_id), details={
                    "model_id": row["model_id"], **{name: str(changes[name]) if changes[name] is not None else None
                                                    for name in names}})
    except asyncpg.ExclusionViolationError as error:
        model = await pool.fetchval("SELECT model_id FROM model_pricing WHERE id = $1", price_id)
        raise _overlap(model) from error
    except asyncpg.CheckViolationError as error:
        raise PriceInvalid("a price row must end after it starts (effective_to > effective_from)") from error
    return dict(row) if row else None
