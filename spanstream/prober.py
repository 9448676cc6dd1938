"""The MCP prober: probes every registered, enabled server on its own interval and publishes
each result to `health.checks` (docs/health-checks.md).

Who probes what: servers are split into `probe_shards` shards by a hash of project and name, and
a prober probes only the shards whose PostgreSQL advisory lock it holds on a connection of its
own. So any number of probers (the one in each `spanstream serve`, `spanstream probe` processes)
never probe one server twice at once; with the default single shard exactly one prober of the
deployment probes and the others stand by, and when its process dies its connection, and so its
lock, goes with it and a standby takes the shard at its next refresh. Within a prober a server is
never probed again while its previous probe runs, and `probe_concurrency` bounds probes in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time

import asyncpg
import mode
from confluent_kafka import KafkaError

from schemas.health_check import HealthCheck, check_key
from spanstream.mcp_probe import McpServer, probe
from spanstream.metrics import HEALTH_CHECKS, serve_metrics
from spanstream.producer import make_producer
from spanstream.settings import Settings

log = logging.getLogger(__name__)



def lock_class(topic: str) -> int:
    """pg_try_advisory_lock(class, shard)'s class: probers publishing to one topic are one
    deployment, which probes each server once; a deployment on another topic has its own locks."""
    return int.from_bytes(hashlib.sha256(f"spanstream-probe:{topic}".encode()).digest()[:4], "big", signed=True)


def shard_of(server_key: str, shards: int) -> int:
    """Stable across processes and restarts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(server_key.encode()).digest()[:8], "big") % shards


async def load_servers(pool: asyncpg.Pool) -> list[McpServer]:
    rows = await pool.fetch(
        """SELECT id, project_id, name, transport, command, args, env, url, headers, interval_seconds,
                  timeout_seconds, degraded_after_ms
           FROM mcp_servers WHERE enabled ORDER BY project_id, name""")
    return [McpServer(
        id=str(row["id"]), project_id=str(row["project_id"]), name=row["name"], transport=row["transport"],
        command=row["command"], args=json.loads(row["args"]), env=json.loads(row["env"]), url=row["url"],
        headers=json.loads(row["headers"]), interval_seconds=row["interval_seconds"],
        timeout_seconds=row["timeout_seconds"], degraded_after_ms=row["degraded_after_ms"],
    ) for row in rows]


class ShardLocks:
    """The shards this prober owns, as advisory locks held on one dedicated connection."""

    def __init__(self, dsn: str, topic: str, shards: int, only: int | None) -> None:
        self._dsn = dsn
        self._class = lock_class(topic)
        self._wanted = [only] if only is not None else list(range(shards))
        self._connection: asyncpg.Connection | None = None
        self.held: set[int] = set()

    async def refresh(self) -> set[int]:
        """Takes the wanted shards that are free; if the connection is gone, so are the locks."""
        try:
            if self._connection is None or self._connection.is_closed():
                self.held = set()
                self._connection = await asyncpg.connect(self._dsn, timeout=10)
            await self._connection.fetchval("SELECT 1", timeout=10)
            for shard in self._wanted:
                if shard not in self.held and await self._connection.fetchval(
                        "SELECT pg_try_advisory_lock($1, $2)", self._class, shard, timeout=10):
                    self.held.add(shard)
                    log.info("prober took MCP probe shard %d", shard)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("prober lost PostgreSQL (%s); it probes nothing until it holds a shard again", error)
            await self.close()
        return set(self.held)

    async def close(self) -> None:
        self.held = set()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=5)
            self._connection = None


class CheckPublisher:
    """Publishes check records keyed project/server and resolves once the broker acknowledged."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.health_checks_topic
        self._producer = make_producer(settings, **{"message.timeout.ms": 30_000})
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="health-check-publisher", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    async def publish(self, check: HealthCheck) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[KafkaError | None] = loop.create_future()

        def delivered(error: KafkaError | None, _message) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(error))

        self._producer.produce(self._topic, key=check_key(check.project_id, check.server_name),
                               value=json.dumps(check.to_record(), separators=(",", ":")).encode(),
                               on_delivery=delivered)
        error = await done
        if error is not None:
            raise RuntimeError(f"Kafka did not acknowledge the check: {error.str()}")

    def close(self) -> None:
        self._stopping.set()
        self._poller.join()
        self._producer.flush(10)


class Prober:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._locks = ShardLocks(settings.postgres_dsn, settings.health_checks_topic, settings.probe_shards,
                                 settings.probe_shard)
        self._servers: dict[str, McpServer] = {}
        self._due: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(settings.probe_concurrency)
        self._wake = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        """Probes until `stopping` is set; then lets no new probe start and cancels those in flight."""
        # The SDK's HTTP client logs every request of every probe at INFO.
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        publisher = CheckPublisher(self._settings)
        # min_size=0: the pool connects on first use, so a PostgreSQL that is down at start is
        # a failed refresh (retried at the next), not a prober that never runs.
        pool = await asyncpg.create_pool(self._settings.postgres_dsn, min_size=0, max_size=2)
        try:
            next_refresh = 0.0
            while not stopping.is_set():
                now = time.monotonic()
                if now >= next_refresh:
                    await self._refresh(pool)
                    next_refresh = now + self._settings.probe_refresh_seconds
                for server_id, server in self._servers.items():
                    if server_id not in self._in_flight and self._due[server_id] <= now:
                        self._in_flight[server_id] = asyncio.ensure_future(self._probe(server, publisher))
                wait = min([next_refresh, *(due for key, due in self._due.items() if key not in self._in_flight)]) - now
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_first(stopping.wait(), self._wake.wait()), max(wait, 0.05))
        finally:
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            await self._locks.close()
            await pool.close()
            await asyncio.to_thread(publisher.close)

    async def _refresh(self, pool: asyncpg.Pool) -> None:
        held = await self._locks.refresh()
        try:
            servers = await load_servers(pool) if held else []
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("prober could not read the registered MCP servers (%s); keeps the last list", error)
            return
        mine = {s.id: s for s in servers if shard_of(s.key, self._settings.probe_shards) in held
                and (s.transport != "stdio" or self._settings.probe_stdio)}
        now = time.monotonic()
        for server_id, server in mine.items():
            before = self._servers.get(server_id)
            if before is None or before != server:
                self._due[server_id] = now  # new or edited: probe it now
        for server_id in set(self._due) - set(mine):
            del self._due[server_id]
        self._servers = mine

    async def _probe(self, server: McpServer, publisher: CheckPublisher) -> None:
        started = time.monotonic()
        try:
            async with self._slots:
                check = await probe(server, self.name)
            # Server names are a project's own: two projects may each have a `github`.
            HEALTH_CHECKS.labels(project=server.project_id, server=server.name, status=check.status).inc()
            await publisher.publish(check)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one server's failure must not stop the others
            log.exception("probing MCP server %s failed", server.key)
        finally:
            self._in_flight.pop(server.id, None)
            if server.id in self._due:
                self._due[server.id] = started + server.interval_seconds
            self._wake.set()


async def _first(*waits) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class ProberService(mode.Service):
    """The prober inside a Faust worker (`spanstream serve`), stopped with it."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        super().__init__(**kwargs)
        self._prober = Prober(settings)
        self._stopping = asyncio.Event()

    async def on_start(self) -> None:
        self.add_future(self._prober.run(self._stopping))

    async def on_stop(self) -> None:
        self._stopping.set()


def run_prober(settings: Settings) -> None:
    """`spanstream probe`: the prober alone, until SIGINT or SIGTERM; its health-check counts on
    SPANSTREAM_METRICS_PORT when set (it has no API to show them)."""
    if settings.metrics_port:
        serve_metrics(settings.metrics_port, settings.api_host)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await Prober(settings).run(stopping)

    asyncio.run(main())
