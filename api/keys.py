"""Project API keys: how they are made, shown once, and checked against their stored hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "ss"


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str
    key_hash: bytes


def hash_key(plaintext: str) -> bytes:
    # Keys carry 256 random bits, so a fast hash is enough; passwords get a slow one.
    return hashlib.sha256(plaintext.encode()).digest()


def generate_key() -> NewKey:
    prefix = f"{KEY_PREFIX}_{secrets.token_hex(6)}"
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(plaintext, prefix, hash_key(plaintext))


def key_prefix(plaintext: str) -> str | None:
    """The lookup prefix of a presented key, or None when it is not shaped like one of ours."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12:
        return None
    return f"{parts[0]}_{parts[1]}"


def matches(plaintext: str, stored_hash: bytes) -> bool:
    return secrets.compare_digest(hash_key(plaintext), bytes(stored_hash))
