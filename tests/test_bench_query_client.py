"""bench_query's lean HTTP client answers what httpx answers, over a real uvicorn server."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import StreamingResponse

from loadtests.bench_query import LeanClient
from tests.conftest import free_port

pytestmark = pytest.mark.anyio


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo(q: str = "", x_api_key: str = Header("")) -> dict:
        return {"q": q, "key": x_api_key, "pad": "x" * 70_000}

    @app.get("/chunked")
    async def chunked() -> StreamingResponse:
        return StreamingResponse(iter([b"one,", b"two,", b"three"]), media_type="text/plain")

    return app


async def test_the_lean_client_gets_what_httpx_gets_also_after_the_server_closed_an_idle_connection():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_keep_alive=1))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        lean = LeanClient(base, {"X-API-Key": "k1"})
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": "k1"}) as reference:
            for path, params in (("/echo", {"q": "a b&c"}), ("/chunked", None), ("/missing", None)):
                got, expected = await lean.get(path, params), await reference.get(path, params=params)
                assert (got.status_code, got.content) == (expected.status_code, expected.content)
            await asyncio.sleep(1.5)  # past the keep-alive timeout: the server closes the idle connection
            again = await lean.get("/echo", {"q": "later"})
            assert again.status_code == 200 and b'"q":"later"' in again.content
        await lean.close()
    finally:
        server.should_exit = True
        await serving
