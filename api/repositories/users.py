"""Users, their passwords and login sessions; failed logins and the lockout they lead to."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.errors import BadRequest, Conflict, Locked, Unauthorized
from api.passwords import DECOY_HASH, hash_password, password_problem, verify_password
from api.repositories.audit import Actor, record
from api.tokens import LOGIN_PREFIX, hash_token, new_token

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class User:
    id: UUID
    email: str
    created_at: datetime


@dataclass(frozen=True)
class LoginUser:
    """The user behind a presented login token, and which login session it is."""

    id: UUID
    email: str
    session_id: UUID


@dataclass(frozen=True)
class LoginSession:
    token: str
    expires_at: datetime


def normalize_email(email: str) -> str:
    cleaned = email.strip().lower()
    if len(cleaned) > 320 or not _EMAIL.match(cleaned):
        raise BadRequest(f"not an email address: {email!r}")
    return cleaned


async def user_by_email(connection: asyncpg.Connection | asyncpg.Pool, email: str) -> User | None:
    row = await connection.fetchrow("SELECT id, email, created_at FROM users WHERE email = $1", email)
    return User(**dict(row)) if row else None


async def new_password_hash(password: str) -> str:
    problem = password_problem(password)
    if problem:
        raise BadRequest(problem)
    # scrypt takes tens of milliseconds of CPU; off the event loop so other requests go on.
    return await asyncio.to_thread(hash_password, password)


async def insert_user(connection: asyncpg.Connection, email: str, password_hash: str, actor: Actor) -> User:
    """Part of a caller's transaction; a taken email is a Conflict."""
    try:
        row = await connection.fetchrow(
            "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id, email, created_at",
            email, password_hash,
        )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(f"a user with the email {email} already exists") from error
    user = User(**dict(row))
    await record(connection, actor, "user.created", f"user:{email}", user_id=user.id)
    return user


async def authenticate(
    pool: asyncpg.Pool, email: str, password: str, max_failures: int, lockout_seconds: float, actor: Actor
) -> User:
    """The user if the password is right and the account is not locked. Every failure is
    recorded; the max_failures-th in a row locks the account for lockout_seconds."""
    email = email.strip().lower()
    row = await pool.fetchrow(
        """SELECT id, email, created_at, password_hash,
                  greatest(0, ceil(extract(epoch FROM locked_until - now())))::int AS locked_for
           FROM users WHERE email = $1""",
        email,
    )
    if row is None:
        await asyncio.to_thread(verify_password, password, DECOY_HASH)
        await record(pool, actor, "auth.login_failed", f"user:{email}", details={"reason": "unknown email"})
        raise Unauthorized("wrong email or password")
    user = User(row["id"], row["email"], row["created_at"])
    if row["locked_for"] > 0:
        await record(pool, actor, "auth.login_locked", f"user:{email}", user_id=user.id,
                     details={"locked_for_seconds": row["locked_for"]})
        raise _locked(row["locked_for"])
    if not await asyncio.to_thread(verify_password, password, row["password_hash"]):
        raise await _count_failure(pool, user, max_failures, lockout_seconds, actor)
    cleared = await pool.fetchval(
        """UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = now()
           WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now()) RETURNING id""",
        user.id,
    )
    if cleared is None:  # locked by concurrent failures while the password was checked
        raise _locked(int(lockout_seconds))
    return user


async def _count_failure(
    pool: asyncpg.Pool, user: User, max_failures: int, lockout_seconds: float, actor: Actor
) -> Locked | Unauthorized:
    # One statement, so concurrent wrong guesses cannot each see a count below the limit.
    row = await pool.fetchrow(
        """UPDATE users SET
               failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
               locked_until = CASE WHEN failed_logins + 1 >= $2
                                   THEN now() + $3 * interval '1 second' ELSE locked_until END
           WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now())
           RETURNING failed_logins, locked_until > now() AS locked""",
        user.id, max_failures, lockout_seconds,
    )
    target = f"user:{user.email}"
    if row is None or row["locked"]:
        await record(pool, actor, "auth.login_locked", target, user_id=user.id,
                     details={"failures": max_failures, "locked_for_seconds": lockout_seconds})
        return _locked(int(lockout_seconds))
    await record(pool, actor, "auth.login_failed", target, user_id=user.id,
                 details={"reason": "wrong password", "failures": row["failed_logins"]})
    return Unauthorized("wrong email or password")


def _locked(seconds: int) -> Locked:
    return Locked(
        f"this account is locked after too many failed logins; try again in {seconds} seconds",
        headers={"Retry-After": str(max(1, seconds))},
    )


async def open_session(
    connection: asyncpg.Connection | asyncpg.Pool, user: User, hours: float, actor: Actor
) -> LoginSession:
    token, token_hash = new_token(LOGIN_PREFIX)
    expires_at = await connection.fetchval(
        """INSERT INTO login_sessions (user_id, token_hash, expires_at, client_ip)
           VALUES ($1, $2, now() + $3 * interval '1 hour', $4) RETURNING expires_at""",
        user.id, token_hash, hours, actor.client_ip,
    )
    # Expired sessions of this user are of no further use; dropping them here keeps the table small.
    await connection.execute("DELETE FROM login_sessions WHERE user_id = $1 AND expires_at <= now()", user.id)
    await record(connection, actor, "auth.login", f"user:{user.email}", user_id=user.id)
    return LoginSession(token, expires_at)


async def user_of_token(pool: asyncpg.Pool, token: str) -> LoginUser | None:
    row = await pool.fetchrow(
        """SELECT u.id, u.email, s.id AS session_id FROM login_sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = $1 AND s.expires_at > now()""",
        hash_token(token),
    )
    return LoginUser(**dict(row)) if row else None


async def end_session(pool: asyncpg.Pool, user: LoginUser, actor: Actor) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("DELETE FROM login_sessions WHERE id = $1", user.session_id)
        await record(connection, actor, "auth.logout", f"user:{user.email}", user_id=user.id)
