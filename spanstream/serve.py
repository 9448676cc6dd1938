"""Runs Spanstream's long-lived processes: the store owner (ClickHouse sinks, and the API if
asked) with its fold worker children (spanstream/fold.py), and the ingestion-only API.

Embedded chdb may be opened by one process only, so with the embedded store the sinks (which
write ClickHouse) and the API (which reads it) share one process and one `ClickHouseStore`. The
fold workers need no store: `spanstream serve` starts one as a child so the stateful work gets
a core of its own. With a ClickHouse server every part can also run as processes of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import faust
import mode
import uvicorn

from api.app import create_app
from spanstream.clickhouse import ClickHouseStore
from spanstream.kafka import ensure_topics
from spanstream.metrics import serve_metrics
from spanstream.metrics_dir import process_dir
from spanstream.migrate import apply_spans_ttl, migrate_clickhouse, migrate_postgres
from spanstream.operator import operator_token
from spanstream.prober import ProberService
from spanstream.replay import replay
from spanstream.settings import Settings
from spanstream.topic_names import faust_sink_group_name
from streams.app import create_faust_app
from streams.health_checks import register_health_check_agents
from streams.on_thread import OnThread
from streams.view_sinks import view_sinks

log = logging.getLogger(__name__)


def end_live_streams(app) -> None:
    """Open live-feed streams never end by themselves, and uvicorn waits for open responses
    before it stops: end them first (api/live/feed.py)."""
    live = getattr(app.state, "live", None)
    if live is not None:
        live.end_streams()


class _Server(uvicorn.Server):
    def handle_exit(self, sig, frame) -> None:
        # A signal handler: the streams are ended on the loop, where they run.
        with contextlib.suppress(RuntimeError):
            asyncio.get_event_loop().call_soon_threadsafe(end_live_streams, self.config.app)
        super().handle_exit(sig, frame)


class _ServerWithoutSignals(uvicorn.Server):
    # The worker owns SIGINT/SIGTERM and stops this server as one of its services.
    def capture_signals(self):
        return contextlib.nullcontext()


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({error.strerror}); stop what uses it or set SPANSTREAM_API_PORT") from error
    return sock


class ApiServer(mode.Service):
    """Serves the FastAPI app inside the worker's event loop."""

    def __init__(self, app, host: str, port: int, access_log: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self._socket = bind_socket(host, port)
        self._app = app
        self._server = _ServerWithoutSignals(uvicorn.Config(app, log_level="info", lifespan="on", access_log=access_log))
        self._task: asyncio.Task | None = None

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                raise RuntimeError("the API failed to start; see the log above")
            await asyncio.sleep(0.05)

    async def on_stop(self) -> None:
        end_live_streams(self._app)
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task


class StoreCloser(mode.Service):
    """Closes the ClickHouse store after the agents and the API have stopped."""

    def __init__(self, store: ClickHouseStore, **kwargs) -> None:
        super().__init__(**kwargs)
        self._store = store

    async def on_shutdown(self) -> None:
        self._store.close()


class FoldProcesses(mode.Service):
    """Runs `spanstream fold` children: the stateful fold gets cores of its own while this
    process (which owns the store) sinks and serves. A child that dies is started again; a
    child outlives no parent (PR_SET_PDEATHSIG), even one killed with SIGKILL."""

    def __init__(self, count: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._count = count
        self._folds: list[subprocess.Popen] = []

    async def on_start(self) -> None:
        self._folds = [_start_fold_child(index) for index in range(self._count)]
        self.add_future(self._supervise())

    async def _supervise(self) -> None:
        # A child that keeps dying at start (PostgreSQL down, say) is restarted ever more slowly,
        # up to every 30 s, instead of every second; one that ran a while restarts at once.
        count = len(self._folds)
        started, delays = [time.monotonic()] * count, [0.0] * count
        restart_at: list[float | None] = [None] * count
        while not self.should_stop:
            for index, child in enumerate(self._folds):
                if child.poll() is None or self.should_stop:
                    continue
                now = time.monotonic()
                if restart_at[index] is None:
                    quick = now - started[index] < 30
                    delays[index] = min(max(1.0, delays[index] * 2), 30.0) if quick else 0.0
                    restart_at[index] = now + delays[index]
                    log.error("fold worker %d exited with %s; starting it again in %.0f s",
                              child.pid, child.returncode, delays[index])
                    _forget_metrics_of(child.pid)
                if now >= restart_at[index]:
                    self._folds[index] = _start_fold_child(index)
                    started[index], restart_at[index] = now, None
            await asyncio.sleep(0.5)

    async def on_stop(self) -> None:
        for child in self._folds:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self._folds:
            try:
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()


def _forget_metrics_of(pid: int) -> None:
    # Its counters stay counted; its gauges (live-feed connections, say) stop being added.
    if process_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _start_fold_child(index: int) -> subprocess.Popen:
    env = {**os.environ, "SPANSTREAM_FOLD_INDEX": str(index)}
    return subprocess.Popen([sys.executable, "-m", "spanstream.cli", "fold"], env=env, preexec_fn=_die_with_parent)


def run(settings: Settings, *, api: bool = True, fold_processes: int = 1,
        extra_services: Callable[[ClickHouseStore], list[mode.Service]] = lambda store: []) -> None:
    """The process that owns the analytics store: ClickHouse sinks, the API if asked, and
    `fold_processes` fold workers as children (0: run them elsewhere, `spanstream fold`).
    Waits for the dependencies and migrates first; serves until SIGINT/SIGTERM; then stops
    consuming, lets the in-flight batches finish and closes the store."""
    ensure_topics(settings)
    asyncio.run(migrate_postgres(settings.postgres_dsn))
    store = ClickHouseStore(settings).open()
    migrate_clickhouse(store)
    apply_spans_ttl(store, settings.spans_ttl_days)
    app = create_faust_app(settings, faust_sink_group_name(settings.worker_id), "sink")
    register_health_check_agents(app, settings, store)
    # After StoreCloser: a worker stops its services last to first, so the sinks write and
    # commit what they hold before the store closes.
    services: list[mode.Service] = [StoreCloser(store)]
    services.extend(OnThread(f"sink-{sink.name}", sink.run) for sink in view_sinks(settings, store))
    if settings.probe_in_serve:
        services.append(ProberService(settings))
    if fold_processes:
        services.append(FoldProcesses(fold_processes))
    if api:
        def replayer(reprice: bool, since, report) -> None:
            replay(settings, store, reprice=reprice, since=since, report=report)

        app_ = create_app(settings, store, replayer, operator_token(settings))
        services.append(ApiServer(app_, settings.api_host, settings.api_port, settings.api_access_log))
    elif settings.metrics_port:
        serve_metrics(settings.metrics_port, settings.api_host)
    services.extend(extra_services(store))
    faust.Worker(app, *services, loglevel="info", redirect_stdouts=False).execute_from_commandline()


def run_ingest(settings: Settings) -> None:
    """The API without the analytics store: ingestion scales apart from queries and never waits
    on ClickHouse. Runs on uvloop with httptools, since request overhead dominates ingestion."""
    ensure_topics(settings)
    asyncio.run(migrate_postgres(settings.postgres_dsn))
    sock = bind_socket(settings.api_host, settings.api_port)
    config = uvicorn.Config(
        create_app(settings, None), loop="uvloop", http="httptools", log_level="info",
        access_log=settings.api_access_log,
    )
    try:
        _Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled by shutting down gracefully
