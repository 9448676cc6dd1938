"""Helpers for the metadata API tests: an app on the test database, users, logins."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

import asyncpg
import httpx

from api.app import create_app
from api.repositories.projects import create_api_key, project_by_ref
from spanstream.accounts import create_user

PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def api(settings, **overrides):
    """An app (no analytics store) with its lifespan running; several may share the database."""
    app = create_app(settings.model_copy(update=overrides), None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spanstream") as client:
            client.app = app
            yield client


async def new_user(settings, project: str, role: str = "admin", password: str = PASSWORD) -> str:
    """A user made the way `spanstream create-user` makes one; returns the email."""
    email = f"{unique('user')}@example.com"
    await create_user(settings, email, project, role, password=lambda: password)
    return email


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def bearer(token: str, project: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if project is not None:
        headers["X-Project"] = project
    return headers


async def admin_key(settings, project: str, role: str = "admin") -> str:
    """A key of an existing project, made as `spanstream create-key` makes one."""
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=1)
    try:
        found = await project_by_ref(pool, project)
        return await create_api_key(pool, found.id, "test", role)
    finally:
        await pool.close()
