"""Password hashing: scrypt with a salt per hash and its parameters stored beside it."""

from __future__ import annotations

import base64
import hashlib

from api.passwords import hash_password, password_problem, verify_password


def test_the_same_password_hashes_differently_and_verifies():
    first, second = hash_password("hunter2hunter2"), hash_password("hunter2hunter2")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("hunter2hunter2", first) and verify_password("hunter2hunter2", second)
    assert not verify_password("hunter2hunter3", first)


def test_hashes_made_with_other_parameters_still_verify():
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"old password", salt=salt, n=2**12, r=8, p=1, dklen=32)
    stored = f"scrypt${2**12}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("old password", stored)
    assert not verify_password("new password", stored)


def test_malformed_hashes_never_verify():
    for stored in ("", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA==$AA==", "scrypt$16384$8$1$!!$!!"):
        assert not verify_password("anything", stored)


def test_short_and_huge_passwords_are_refused_with_a_reason():
    assert "at least 8" in password_problem("short")
    assert "at most" in password_problem("x" * 5000)
    assert password_problem("long enough") is None
