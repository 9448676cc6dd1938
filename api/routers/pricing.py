"""Model prices, shared by every project: any API key reads them; changing them needs the operator token.

Why the operator and not a project admin: the price book is global, so a change re-prices every
project's spans. Letting the admin of one project do it would let one tenant change what other
tenants are charged. The operator token (SPANSTREAM_OPERATOR_TOKEN, or <data dir>/operator-token,
spanstream/operator.py) is what already guards other cross-project work (replays), and is sent
as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.cursor import decode_cursor, page
from api.deps import ClientIp, CurrentCaller, Pool
from api.fields import RequestBody, invalid_field
from api.models import errors
from api.repositories.audit import Actor
from api.repositories.pricing import PriceConflict, PriceInvalid, add_price, correct_price, list_prices

router = APIRouter(prefix="/api/pricing", tags=["pricing"])

MODEL_ID = r"^[a-z0-9][a-z0-9._-]*$"
UsdPerMtok = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6, description="USD per million tokens")]
_WRITE_ERRORS = errors({401: "operator token required", 409: "the model would have two prices in force at once"})


async def _operator(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    token = request.app.state.operator_token
    presented = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else ""
    if not token or not presented or not hmac.compare_digest(presented.encode(), token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "changing prices needs the operator token (Authorization: Bearer): prices apply to every project",
                            headers={"WWW-Authenticate": "Bearer"})


class PriceIn(RequestBody):
    """A model's price from `effective_from` on. Token kinds a provider does not price apart
    default as in the seed (docs/pricing.md): cache reads and writes at the input price,
    thinking at the output price."""

    model_id: str = Field(min_length=1, max_length=200, pattern=MODEL_ID, description=(
        "normalized: lowercase, no provider prefix or dated suffix (claude-sonnet-4-5, gpt-4o)"))
    provider: str | None = Field(default=None, min_length=1, max_length=100,
                                 description="required for a model with no price yet; else copied")
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    input_usd_per_mtok: UsdPerMtok
    output_usd_per_mtok: UsdPerMtok
    cache_read_usd_per_mtok: UsdPerMtok | None = None
    cache_creation_usd_per_mtok: UsdPerMtok | None = None
    thinking_usd_per_mtok: UsdPerMtok | None = None
    effective_from: AwareDatetime

    @model_validator(mode="after")
    def _defaults(self) -> PriceIn:
        if self.cache_read_usd_per_mtok is None:
            self.cache_read_usd_per_mtok = self.input_usd_per_mtok
        if self.cache_creation_usd_per_mtok is None:
            self.cache_creation_usd_per_mtok = self.input_usd_per_mtok
        if self.thinking_usd_per_mtok is None:
            self.thinking_usd_per_mtok = self.output_usd_per_mtok
        return self


class PriceCorrection(RequestBody):
    """Fields to overwrite on one row; `effective_to: null` makes it open-ended."""

    provider: str | None = Field(default=None, min_length=1, max_length=100)
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    input_usd_per_mtok: UsdPerMtok | None = None
    output_usd_per_mtok: UsdPerMtok | None = None
    cache_read_usd_per_mtok: UsdPerMtok | None = None
    cache_creation_usd_per_mtok: UsdPerMtok | None = None
    thinking_usd_per_mtok: UsdPerMtok | None = None
    effective_from: AwareDatetime | None = None
    effective_to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _only_end_may_be_null(self) -> PriceCorrection:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None and name != "effective_to"]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} may not be null; leave a field out to keep it")
        return self


class PriceOut(BaseModel):
    id: UUID
    provider: str
    model_id: str
    display_name: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cache_read_usd_per_mtok: Decimal
    cache_creation_usd_per_mtok: Decimal
    thinking_usd_per_mtok: Decimal
    effective_from: datetime
    effective_to: datetime | None
    created_at: datetime


class PricePage(BaseModel):
    items: list[PriceOut]
    next_cursor: str | None


class PriceAdded(BaseModel):
    price: PriceOut
    closed: PriceOut | None = Field(description="the row that was in force at effective_from, now ending there")


@router.get("", response_model=PricePage, responses=errors({400: "malformed cursor"}), summary="Price rows, by model and start (history, or only those in force now)")
async def prices(caller: CurrentCaller, pool: Pool,
                 model_id: Annotated[str | None, Query(max_length=200, pattern=MODEL_ID)] = None,
                 current: Annotated[bool, Query(description="only the rows in force now")] = False,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 200, cursor: str | None = None) -> PricePage:
    after = decode_cursor(cursor, str, datetime, UUID) if cursor else None
    rows, next_cursor = page(await list_prices(pool, model_id, current, limit + 1, after), limit,
                             lambda r: (r["model_id"], r["effective_from"], r["id"]))
    return PricePage(items=[PriceOut(**row) for row in rows], next_cursor=next_cursor)


@router.post("", response_model=PriceAdded, status_code=status.HTTP_201_CREATED, dependencies=[Depends(_operator)],
             responses=_WRITE_ERRORS,
             summary="Add a model's price from a date, closing the row in force then (operator)")
async def add(body: PriceIn, pool: Pool, ip: ClientIp) -> PriceAdded:
    try:
        added, closed = await add_price(pool, body.model_dump(), Actor("operator", ip))
    except PriceConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    except PriceInvalid as error:
        raise invalid_field(("body", "provider"), str(error)) from error
    return PriceAdded(price=PriceOut(**added), closed=PriceOut(**closed) if closed else None)


@router.patch("/{price_id}", response_model=PriceOut, dependencies=[Depends(_operator)],
              responses={**_WRITE_ERRORS, **errors({404: "no such price row"})},
              summary="Correct one price row (operator); spans already folded keep the old figures until a reprice")
async def correct(price_id: UUID, body: PriceCorrection, pool: Pool, ip: ClientIp) -> PriceOut:
    try:
        row = await correct_price(pool, price_id, body.model_dump(include=body.model_fields_set), Actor("operator", ip))
    except PriceConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    except PriceInvalid as error:
        raise invalid_field(("body", "effective_to"), str(error)) from error
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no price row {price_id}")
    return PriceOut(**row)
