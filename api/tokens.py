"""Opaque bearer tokens for login sessions and invites: random, shown once, stored as a hash."""

from __future__ import annotations

import hashlib
import secrets

# The prefix says what a presented token is, so a login token is never looked up as an API key
# (those start with `ss_`, api/keys.py) and an invite is never taken for a login.
LOGIN_PREFIX = "sst_"
INVITE_PREFIX = "ssi_"


def hash_token(plaintext: str) -> bytes:
    # 256 random bits: a fast hash is enough.
    return hashlib.sha256(plaintext.encode()).digest()


def new_token(prefix: str) -> tuple[str, bytes]:
    plaintext = prefix + secrets.token_urlsafe(32)
    return plaintext, hash_token(plaintext)


def is_login_token(plaintext: str) -> bool:
    return plaintext.startswith(LOGIN_PREFIX)
