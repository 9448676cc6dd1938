"""Failed logins per client address: a guesser spreading wrong passwords over many accounts,
each below its own lockout, is blocked by address (migrations/postgres/0007)."""

from __future__ import annotations

import asyncpg

from api.errors import TooManyRequests
from api.repositories.audit import Actor, record


async def refuse_if_blocked(pool: asyncpg.Pool, ip: str | None) -> None:
    """Raises TooManyRequests while the address is blocked."""
    if ip is None:
        return
    seconds = await pool.fetchval(
        """SELECT greatest(0, ceil(extract(epoch FROM blocked_until - now())))::int
           FROM login_ip_failures WHERE client_ip = $1""",
        ip,
    )
    if seconds:
        raise _blocked(seconds)


async def count_failure(pool: asyncpg.Pool, actor: Actor, max_failures: int, window_seconds: float,
                        block_seconds: float) -> None:
    """Counts a failed login of the actor's address; the max_failures-th within the window
    blocks it for block_seconds (and is audited)."""
    if actor.client_ip is None or max_failures <= 0:
        return
    # One statement, so concurrent failures cannot each see a count below the limit. A window
    # that has passed starts over at this failure.
    row = await pool.fetchrow(
        """INSERT INTO login_ip_failures AS f (client_ip, window_start, failures)
           VALUES ($1, now(), 1)
           ON CONFLICT (client_ip) DO UPDATE SET
               window_start = CASE WHEN f.window_start <= now() - $2 * interval '1 second'
                                   THEN now() ELSE f.window_start END,
               failures = CASE WHEN f.window_start <= now() - $2 * interval '1 second'
                               THEN 1 ELSE f.failures + 1 END
           RETURNING failures, blocked_until > now() AS blocked""",
        actor.client_ip, window_seconds,
    )
    if row["failures"] < max_failures or row["blocked"]:
        return
    # Of concurrent failures past the limit, one blocks the address and audits it.
    blocked = await pool.fetchval(
        """UPDATE login_ip_failures SET blocked_until = now() + $2 * interval '1 second',
                  window_start = now(), failures = 0
           WHERE client_ip = $1 AND (blocked_until IS NULL OR blocked_until <= now())
           RETURNING true""",
        actor.client_ip, block_seconds,
    )
    if blocked:
        await record(pool, actor, "auth.ip_blocked", f"ip:{actor.client_ip}",
                     details={"failures": max_failures, "blocked_for_seconds": block_seconds})


def _blocked(seconds: int) -> TooManyRequests:
    return TooManyRequests(
        f"too many failed logins from this address; try again in {seconds} seconds",
        headers={"Retry-After": str(max(1, seconds))},
    )
