"""A real HTTP server around the app and a small SSE client, for the live feed tests and benchmark."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg
import httpx
import uvicorn

from api.app import create_app
from api.repositories.projects import create_api_key, ensure_project
from spanstream.settings import Settings


def viewer_project(dsn: str, prefix: str) -> tuple[str, str]:
    """A new project and a viewer key of it: (project id, key)."""
    async def create() -> tuple[str, str]:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            project = await ensure_project(pool, f"{prefix}-{uuid.uuid4().hex[:8]}")
            return str(project.id), await create_api_key(pool, project.id, prefix, role="viewer")
        finally:
            await pool.close()

    return asyncio.run(create())


@dataclass
class ServedApp:
    base: str
    app: object
    server: uvicorn.Server


@contextmanager
def serve_app(settings: Settings) -> Iterator[ServedApp]:
    """uvicorn serving create_app(settings) on a thread of this process, on a real socket, so
    that a test can read the process's counters (app.state) while its clients stream."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings, None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # older uvicorn; newer ones skip off the main thread
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield ServedApp(f"http://127.0.0.1:{port}", app, server)
    finally:
        live = getattr(app.state, "live", None)
        if live is not None and server.started:
            # On the server's loop, where the streams run.
            live._loop.call_soon_threadsafe(live.end_streams)
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class SseEvent:
    event: str | None
    data: str | None
    id: str | None
    comment: str | None = None


@dataclass
class SseStream:
    """Reads an open text/event-stream response block by block, as EventSource parses it: an
    `id:` line sets the last id even in a block that has no data (a keepalive)."""

    response: httpx.Response
    last_id: str | None = None
    _lines: Iterator[str] = field(init=False)

    def __post_init__(self) -> None:
        self._lines = self.response.iter_lines()

    def next_block(self) -> SseEvent | None:
        fields: dict[str, list[str]] = {}
        for line in self._lines:
            if line == "":
                if not fields:
                    continue
                if "id" in fields:
                    self.last_id = fields["id"][-1]
                return SseEvent(fields.get("event", [None])[-1], "\n".join(fields["data"]) if "data" in fields else None,
                                fields.get("id", [None])[-1], "\n".join(fields["comment"]) if "comment" in fields else None)
            name, _, value = line.partition(":")
            fields.setdefault(name or "comment", []).append(value[1:] if value.startswith(" ") else value)
        return None

    def events(self, deadline: float) -> Iterator[SseEvent]:
        """Events with data until the deadline or the end of the stream (the server sends a
        keepalive often enough in the tests for the deadline to be checked)."""
        while time.monotonic() < deadline:
            block = self.next_block()
            if block is None:
                return
            if block.data is not None:
                yield block


@contextmanager
def open_stream(base: str, key: str, timeout: float = 30.0, headers: dict | None = None, **params) -> Iterator[SseStream]:
    with httpx.Client(timeout=httpx.Timeout(timeout)) as client:
        with client.stream("GET", f"{base}/api/live/events", params=params,
                           headers={"X-API-Key": key, **(headers or {})}) as response:
            assert response.status_code == 200, response.read().decode()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield SseStream(response)
