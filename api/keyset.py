"""Opaque cursors for keyset pagination: the sort key of the last row shown, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


class BadCursor(ValueError):
    """The cursor was not made by this API (or was edited); answered 400."""


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise BadCursor("invalid cursor: pass back the next_cursor of a previous page") from error
    if not isinstance(key, list) or len(key) != parts:
        raise BadCursor("invalid cursor: pass back the next_cursor of a previous page")
    return key
