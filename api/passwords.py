"""Password hashing with scrypt (memory-hard): per-user salt, parameters stored with the hash."""

from __future__ import annotations

import base64
import hashlib
import secrets

# 2^14 x 8 x 128 bytes = 16 MiB and about 50 ms per hash on one core: costly to guess at scale,
# cheap enough for a login. Stored with each hash, so raising them later keeps old hashes valid.
N, R, P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32
MIN_LENGTH = 8
MAX_LENGTH = 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=_DKLEN)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=_MAXMEM, dklen=len(expected))
    except ValueError:
        return False
    return secrets.compare_digest(actual, expected)


# Checked against when the email is unknown, so that a wrong email takes as long as a wrong
# password and response times do not tell which addresses have accounts.
DECOY_HASH = hash_password(secrets.token_urlsafe(16))


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"the password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password may have at most {MAX_LENGTH} characters"
    return None
