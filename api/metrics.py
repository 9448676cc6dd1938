"""Prometheus on the API: request metrics by route template, and GET /metrics.

The request metrics are an ASGI middleware rather than a dependency: it sees every answer,
including 401s, 404s and validation errors, and costs about a microsecond a request.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily

from spanstream.clickhouse import ClickHouseStore
from spanstream.kafka_lag import LagReader
from spanstream.metrics import HTTP_DURATION, HTTP_REQUESTS, process_metrics
from spanstream.settings import Settings

# Probes and the scrape itself would drown the figures that matter.
UNINSTRUMENTED = frozenset(("/api/liveness", "/api/readiness", "/metrics"))
# A stream's duration is how long a client stayed, not how fast it was answered.
STREAMING = frozenset(("/api/live/events",))
_PARAMETER = re.compile(r"\{[^}]*\}")


class HttpMetrics:
    def __init__(self, app) -> None:
        self.app = app
        self._templates: dict[str, str] = {}

    def _template(self, scope) -> str:
        route = scope.get("route")
        if route is None:  # no route matched: one label for every unknown path
            return "unmatched"
        path = route.path
        template = self._templates.get(path)
        if template is None:
            template = self._templates[path] = _PARAMETER.sub("{id}", path)
        return template

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in UNINSTRUMENTED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = [500]  # what the client sees if the app raises before answering

        async def send_noting_status(message) -> None:
            if message["type"] == "http.response.start":
                answered[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            path, method = self._template(scope), scope["method"]
            HTTP_REQUESTS.labels(method, path, str(answered[0])).inc()
            if path not in STREAMING:
                HTTP_DURATION.labels(method, path).observe(time.perf_counter() - started)


class _Cached:
    """Runs `read` at most every `seconds`; a scrape every second must not mean a broker or
    ClickHouse round trip every second."""

    def __init__(self, read, seconds: float) -> None:
        self._read, self._seconds = read, seconds
        self._value, self._at = None, float("-inf")
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if time.monotonic() - self._at >= self._seconds:
                self._value, self._at = self._read(), time.monotonic()
            return self._value


class DeploymentCollector:
    """Figures read from the broker and the store at scrape time."""

    def __init__(self, settings: Settings, store: ClickHouseStore | None) -> None:
        self._lag_reader = LagReader(settings)
        self._lag = _Cached(self._lag_reader.read, 5.0)
        self._open = _Cached(lambda: self._open_sessions(store), 15.0) if store is not None else None

    @staticmethod
    def _open_sessions(store: ClickHouseStore) -> int:
        rows = store.query_sync("SELECT count() AS open FROM sessions FINAL WHERE status = 'open'",
                                settings={"max_execution_time": 10})
        return int(rows[0]["open"])

    def collect(self):
        lag = GaugeMetricFamily("spanstream_consumer_lag_messages",
                                "Messages retained but not yet committed by a consumer group, per partition.",
                                labels=["group", "topic", "partition"])
        try:
            for row in self._lag.get():
                lag.add_metric([row.group, row.topic, str(row.partition)], row.messages)
        except Exception:  # noqa: BLE001 - a broker outage must not fail the whole scrape
            pass
        yield lag
        if self._open is not None:
            try:
                opened = self._open.get()
            except Exception:  # noqa: BLE001 - nor a slow store
                return
            yield GaugeMetricFamily("spanstream_sessions_open", "Sessions whose status is open.", value=opened)

    def close(self) -> None:
        self._lag_reader.close()


class Scrape:
    """What /metrics shows: every process of the deployment (multiprocess files) or this one,
    plus the deployment's figures."""

    def __init__(self, deployment: DeploymentCollector) -> None:
        self._process = process_metrics()
        self._deployment = deployment

    def collect(self):
        yield from self._process.collect()
        yield from self._deployment.collect()


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None:
        presented = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else ""
        if not secrets.compare_digest(presented.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "metrics need Authorization: Bearer <metrics token>",
                                headers={"WWW-Authenticate": "Bearer"})
    body = await asyncio.to_thread(generate_latest, request.app.state.scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

