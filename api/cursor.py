"""Opaque page cursors: the sort key of a page's last row, so the next page starts after it."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from api.errors import BadRequest


def encode_cursor(*values: Any) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, UUID) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple:
    """The values a cursor carries, converted to `types`; a cursor not made here is a 400."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(types):
            raise ValueError("wrong shape")
        values = tuple(_convert(t, v) for t, v in zip(types, raw, strict=True))
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        raise BadRequest("malformed cursor: pass back the next_cursor of the previous page unchanged") from error
    return values


def _convert(kind: type, value: Any) -> Any:
    if kind is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("cursor time without a zone")
        return moment
    if kind is int and (not isinstance(value, int) or not -(2**63) <= value < 2**63):
        raise ValueError("cursor id out of range")
    return kind(value)


def page(rows: list[Any], limit: int, key) -> tuple[list[Any], str | None]:
    """Rows fetched with limit + 1: the page, and the cursor of the next one if there is one."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))
