"""`spanstream create-user`: the first user of a deployment, made from the command line.

Lives beside the CLI rather than in api/ because it runs with no server: it writes the same
rows (and audit events) as the API, through the API's repositories.
"""

from __future__ import annotations

import getpass
import re
import sys
from collections.abc import Callable

import asyncpg

from api.errors import BadRequest
from api.models import SLUG_PATTERN
from api.repositories.audit import Actor, record
from api.repositories.members import add_member
from api.repositories.projects import ensure_project, project_by_ref
from api.repositories.users import insert_user, new_password_hash, normalize_email, user_by_email
from spanstream.migrate import migrate_postgres
from spanstream.settings import Settings

CLI = Actor("cli")


def read_password() -> str:
    """Prompted twice on a terminal; otherwise the first line of stdin (for scripts)."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise BadRequest("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


async def create_user(settings: Settings, email: str, slug: str, role: str,
                      password: Callable[[], str] = read_password) -> str:
    """Creates the user (asking for a password) unless the email has one, and makes them a
    member of the project (created if needed) with `role`. Returns what was done."""
    email = normalize_email(email)
    if not re.match(SLUG_PATTERN, slug):
        raise BadRequest(f"not a project slug: {slug!r} (lowercase letters, digits, - and _)")
    # The users table may not exist yet on a database older than this build.
    await migrate_postgres(settings.postgres_dsn)
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        existing = await user_by_email(pool, email)
        password_hash = None if existing else await new_password_hash(password())
        project = await project_by_ref(pool, slug)
        if project is None:
            project = await ensure_project(pool, slug)
            await record(pool, CLI, "project.created", f"project:{slug}", project.id, details={"name": slug})
        async with pool.acquire() as connection, connection.transaction():
            user = existing or await insert_user(connection, email, password_hash, CLI)
            await add_member(connection, project, user.id, email, role, CLI, how="cli")
    finally:
        await pool.close()
    made = "existing user" if existing else "new user"
    return f"{made} {email} is now {role} of project {project.slug} ({project.id})"
