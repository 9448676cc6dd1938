"""Opaque keyset cursors: the sort values of the last row a page showed, and what they sort by.

A cursor names the ordering it was made for, so a cursor from one sort used with another is
refused (400) instead of silently skipping or repeating rows.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import orjson
from fastapi import HTTPException, status


def encode_cursor(ordering: str, values: list) -> str:
    raw = orjson.dumps([ordering, [v.isoformat() if isinstance(v, datetime) else v for v in values]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, ordering: str, types: tuple[type, ...]) -> list:
    """The values `encode_cursor` stored, as `types`; 400 when the cursor is not one of ours,
    or was made for another ordering."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        made_for, values = orjson.loads(raw)
        if made_for != ordering or not isinstance(values, list) or len(values) != len(types):
            raise ValueError
        return [_as(kind, value) for kind, value in zip(types, values)]
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "invalid cursor: pass the next_cursor of the previous page, with the same sort and filters",
        ) from None


def _as(kind: type, value):
    if kind is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError
        return moment
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError
    return value
