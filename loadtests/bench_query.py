"""Query latency through the HTTP API over millions of generated spans, beside LangSight's published figures.

Loads `--sessions` sessions of `--spans / --sessions` spans each (loadtests/generate.py), spread
evenly over the last `--days` days, folded and priced as the worker does, straight into the chdb
tables of a fresh data directory (JSONCompactColumns bodies from worker processes, as replay
loads). Then it starts an API process (create_app over that store, under uvicorn) and measures,
from this process over HTTP: the sessions list over 24 hours and over 30 days, one session's
trace, and `--clients` concurrent clients mixing every query endpoint.

    python -m loadtests.bench_query [--spans 10000000] [--sessions 1000000] [--days 30] [--clients 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import asyncpg
import httpx

from api.repositories.projects import create_api_key, ensure_project
from loadtests.generate import SESSION_GAP_S, generate_session
from loadtests.query_seed import encode_bodies, folded_rows, insert_bodies
from streams.session_rows import COST_COLUMNS, HEALTH_COLUMNS, SESSION_COLUMNS
from streams.sink import SPAN_COLUMNS
from spanstream.clickhouse import ClickHouseStore
from spanstream.migrate import migrate_clickhouse, migrate_postgres
from spanstream.settings import load_settings
from streams.pricing_source import load_price_book

# LangSight's published figures (ms), which aggregate raw spans per request: the list at 1M spans.
LANGSIGHT = {"list_24h": 127.0, "list_30d": 530.0, "trace": 50.0, "mixed": None}
TARGETS = {"list_24h": 50.0, "list_30d": 150.0, "trace": 20.0, "mixed": 200.0}
SEED = 5
HOURS_PER_BODY = 8
_TEMPLATES: list = []


def _templates(book, project_id: str, sessions: int, spans_per_session: int, hours: int, base: datetime) -> list:
    """One hour's worth of generated sessions, folded and priced: each hour of the load is a copy
    of it with its own session ids, shifted by whole hours (so every hourly cost cell stays in
    its hour). Generating and folding 10 million spans one by one would take the 2-core VM most
    of an hour; copying rows takes minutes and reads back the same way."""
    per_hour = -(-sessions // hours)
    gap_s = 3600 / per_hour
    templates = []
    for index in range(per_hour):
        spans = generate_session(SEED, index, spans_per_session, project_id,
                                 base + timedelta(seconds=index * gap_s - index * SESSION_GAP_S))
        rows, _ = folded_rows([spans], book, bulk=True)
        templates.append(rows)
    return templates


# Where each table's rows carry the session id and the times to shift.
_SHIFTED = {"spans": (SPAN_COLUMNS.index("session_id"), (SPAN_COLUMNS.index("started_at"), SPAN_COLUMNS.index("ended_at"))),
            "sessions": (SESSION_COLUMNS.index("session_id"),
                         (SESSION_COLUMNS.index("first_at"), SESSION_COLUMNS.index("last_at"))),
            "session_costs": (COST_COLUMNS.index("session_id"), (COST_COLUMNS.index("hour"),)),
            "session_health": (HEALTH_COLUMNS.index("session_id"), (HEALTH_COLUMNS.index("at"),))}


def _hours(job: tuple) -> tuple[list, int]:
    """The rows of hours [first, first + count) as body files; returns them and the span count."""
    first, count, sessions, directory = job
    per_hour = len(_TEMPLATES)
    out: dict[str, list] = {table: [] for table in _SHIFTED}
    for hour in range(first, first + count):
        shift = timedelta(hours=hour)
        for offset, template in enumerate(_TEMPLATES):
            index = hour * per_hour + offset
            if index >= sessions:
                break
            session_id = f"sess-{SEED}-{index:07d}"
            for table, (id_at, times) in _SHIFTED.items():
                for row in template[table]:
                    row = list(row)
                    row[id_at] = session_id
                    for at in times:
                        row[at] = row[at] + shift
                    out[table].append(row)
    return encode_bodies(out, Path(directory)), len(out["spans"])


def load(store: ClickHouseStore, book, project_id: str, sessions: int, spans_per_session: int, days: float,
         workers: int) -> None:
    global _TEMPLATES
    hours = max(1, round(days * 24))
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    base = end - timedelta(hours=hours)
    _TEMPLATES = _templates(book, project_id, sessions, spans_per_session, hours, base)
    print(f"  {len(_TEMPLATES):,} generated sessions per hour, copied into {hours} hours", flush=True)
    directory = tempfile.mkdtemp(prefix="bench-query-bodies-")
    jobs = [(first, min(HOURS_PER_BODY, hours - first), sessions, directory) for first in range(0, hours, HOURS_PER_BODY)]
    started, done_spans = time.monotonic(), 0
    total_spans = sessions * spans_per_session
    context = multiprocessing.get_context("fork")  # the workers inherit the templates
    with context.Pool(workers) as pool:
        for bodies, spans in pool.imap(_hours, jobs):
            insert_bodies(store, bodies)
            done_spans += spans
            elapsed = time.monotonic() - started
            left = (total_spans - done_spans) / (done_spans / elapsed) if done_spans else 0
            print(f"  loaded {done_spans:>11,} of {total_spans:,} spans ({done_spans / elapsed:,.0f} spans/s, "
                  f"ETA {left:,.0f} s)", flush=True)
    shutil.rmtree(directory, ignore_errors=True)


def wait_for_merges(store: ClickHouseStore, timeout: float) -> None:
    """Lets background merges settle, as they would between bursts on a live store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not store.query_sync("SELECT count() AS n FROM system.merges WHERE database = currentDatabase()")[0]["n"]:
            break
        time.sleep(1)
    parts = store.query_sync("""SELECT table, count() AS parts, sum(rows) AS rows FROM system.parts
                                WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table""")
    print("  parts: " + ", ".join(f"{p['table']} {p['parts']} ({p['rows']:,} rows)" for p in parts), flush=True)


async def _project(dsn: str) -> tuple[str, str]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        project = await ensure_project(pool, f"bench-query-{uuid.uuid4().hex[:8]}")
        return str(project.id), await create_api_key(pool, project.id, "bench", role="viewer")
    finally:
        await pool.close()


async def _ensure_database(dsn: str) -> None:
    base, name = dsn.rsplit("/", 1)
    connection = await asyncpg.connect(f"{base}/postgres")
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def serve(data_dir: str, dsn: str, port: int) -> None:
    """The API process: create_app over the loaded store, nothing else (no sinks, no fold)."""
    import uvicorn

    from api.app import create_app

    settings = load_settings(data_dir=Path(data_dir), postgres_dsn=dsn, api_port=port)
    store = ClickHouseStore(settings).open()
    uvicorn.run(create_app(settings, store), host="127.0.0.1", port=port, log_level="warning")


class Response:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code, self.content = status_code, content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class LeanClient:
    """HTTP/1.1 GETs over keep-alive connections, one request at a time per connection: the
    same round trips as httpx, at a fraction of its client-side CPU (httpx spent ~4-5 ms a
    request here, on the same two cores the server runs on)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        address = urlsplit(base)
        self._host, self._port = address.hostname, address.port
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str, params: dict | None = None) -> Response:
        target = f"{path}?{urlencode(params)}" if params else path
        request = f"GET {target} HTTP/1.1\r\nHost: {self._host}\r\n{self._headers}\r\n".encode()
        while self._idle:
            # The server closes a connection idle past its keep-alive timeout; like httpx, send
            # again on a fresh one when a reused connection ends before any answer.
            connection = self._idle.pop()
            try:
                return await self._exchange(connection, request)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                if getattr(error, "partial", b""):
                    raise
        return await self._exchange(await asyncio.open_connection(self._host, self._port), request)

    async def _exchange(self, connection, request: bytes) -> Response:
        reader, writer = connection
        try:
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            fields = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip() for line in head[1:] if ":" in line}
            if fields.get("transfer-encoding") == "chunked":
                body = bytearray()
                while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    body += await reader.readexactly(size + 2)
                    del body[-2:]
                await reader.readuntil(b"\r\n")
                content = bytes(body)
            else:
                content = await reader.readexactly(int(fields.get("content-length", 0)))
        except BaseException:
            writer.close()
            raise
        if fields.get("connection") == "close":
            writer.close()
        else:
            self._idle.append(connection)
        return Response(status, content)

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[94]


async def sequential(client, paths, requests: int) -> tuple[float, float, int]:
    """p50 and p95 in ms of `requests` requests one after another, and how many failed."""
    latencies, errors = [], 0
    for _ in range(requests):
        path, params = paths()
        began = time.perf_counter()
        response = await client.get(path, params=params)
        latencies.append((time.perf_counter() - began) * 1000)
        errors += response.status_code != 200
    return (*_percentiles(latencies), errors)


async def mixed(client, mix, clients: int, seconds: float,
                think_s: float) -> tuple[float, float, int, int, float]:
    """`clients` concurrent clients, each sending its next request `think_s` after its last one
    answered (0: at once, the harshest reading of "concurrent")."""
    latencies: list[float] = []
    by_path: dict[str, list[float]] = {}
    failures: list[str] = []
    stop = time.monotonic() + seconds

    async def one_client() -> None:
        while time.monotonic() < stop:
            path, params = mix()
            began = time.perf_counter()
            try:
                response = await client.get(path, params=params)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {path}: {response.text[:200]}")
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                failures.append(f"{type(error).__name__} {path}")
            latencies.append((time.perf_counter() - began) * 1000)
            kind = "/api/agents/sessions/{id}" if path.startswith("/api/agents/sessions/") else path
            by_path.setdefault(f"{kind} {'filtered' if len(params) > 1 else ''}".strip(), []).append(latencies[-1])
            if think_s:
                await asyncio.sleep(think_s)

    began = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.monotonic() - began
    for failure in failures[:5]:
        print("  failed:", failure)
    for kind, times in sorted(by_path.items()):
        if len(times) >= 2:
            p50, p95 = _percentiles(times)
            print(f"    {kind:<44} {len(times):>6} requests, p50 {p50:8.1f} ms, p95 {p95:8.1f} ms")
    return (*_percentiles(latencies), len(latencies), len(failures), len(latencies) / elapsed)


async def measure(base: str, key: str, sessions: int, requests: int, clients: int, seconds: float,
                  think_s: float, lean: bool = True, server_pid: int | None = None) -> dict:
    rng = random.Random(1)

    def trace() -> tuple[str, dict]:
        return f"/api/agents/sessions/sess-{SEED}-{rng.randrange(sessions):07d}", {}

    def list_24h() -> tuple[str, dict]:
        return "/api/agents/sessions", {}

    def list_30d() -> tuple[str, dict]:
        return "/api/agents/sessions", {"hours": 720}

    endpoints = [
        (30, list_24h), (10, list_30d), (35, trace),
        (5, lambda: ("/api/agents/sessions", {"health_tag": "tool_failure", "sort": "cost"})),
        (8, lambda: ("/api/health/servers", {})),
        (4, lambda: ("/api/health/servers/docs-mcp", {})),
        (4, lambda: ("/api/costs/breakdown", {"group_by": rng.choice(("model", "agent", "server"))})),
        (4, lambda: ("/api/agents", {})),
    ]
    weights = [weight for weight, _ in endpoints]

    def mix() -> tuple[str, dict]:
        return rng.choices(endpoints, weights)[0][1]()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=60) as warm:
        for path, params in (list_24h(), list_30d(), trace()):  # warm up
            assert (await warm.get(path, params=params)).status_code == 200
        size = len((await warm.get("/api/agents/sessions")).content)
    print(f"  sessions list answer: {size / 1024:.1f} KiB for 100 sessions", flush=True)
    client = LeanClient(base, {"X-API-Key": key}) if lean else httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=60)
    print(f"  client: {'lean HTTP/1.1 keep-alive' if lean else 'httpx'}", flush=True)
    results = {}
    try:
        for name, paths in (("list_24h", list_24h), ("list_30d", list_30d), ("trace", trace)):
            began = _cpu_seconds(server_pid), time.process_time()
            p50, p95, errors = await sequential(client, paths, requests)
            results[name] = (p50, p95, errors)
            print(f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {errors} errors{_cpu_per(began, server_pid, requests)}",
                  flush=True)
        began = _cpu_seconds(server_pid), time.process_time()
        p50, p95, total, errors, rate = await mixed(client, mix, clients, seconds, think_s)
        results["mixed"] = (p50, p95, errors)
        print(f"  mixed, {clients} clients, {think_s * 1000:.0f} ms between requests: {total} requests, {rate:.0f}/s, p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
              f"{errors} errors{_cpu_per(began, server_pid, total)}", flush=True)
    finally:
        await (client.close() if lean else client.aclose())
    return results


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process so far (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, IndexError, ValueError):
        return 0.0


def _cpu_per(began: tuple[float, float], pid: int | None, requests: int) -> str:
    server = (_cpu_seconds(pid) - began[0]) * 1000 / max(1, requests)
    client = (time.process_time() - began[1]) * 1000 / max(1, requests)
    return f"; CPU per request: server {server:.1f} ms, client {client:.1f} ms" if pid else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300, help="requests per sequential measurement")
    parser.add_argument("--seconds", type=float, default=20, help="length of the mixed run")
    parser.add_argument("--think-ms", type=float, default=0, help="pause of each mixed client between requests")
    parser.add_argument("--httpx", action="store_true", help="measure with httpx instead of the lean client")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--data-dir", help="load here (default: a fresh temporary directory); reused if loaded")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--serve", nargs=3, metavar=("DATA_DIR", "DSN", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return
    if args.spans < args.sessions:
        parser.error("--spans must be at least --sessions (one span per session or more)")
    base_settings = load_settings()
    dsn = base_settings.postgres_dsn.rsplit("/", 1)[0] + "/spanstream_bench_query"
    asyncio.run(_ensure_database(dsn))
    asyncio.run(migrate_postgres(dsn))
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-query-"))
    settings = load_settings(data_dir=data_dir, postgres_dsn=dsn)
    marker = data_dir / "bench-query-project"
    spans_per_session = args.spans // args.sessions
    store = ClickHouseStore(settings).open()
    try:
        migrate_clickhouse(store)
        if marker.exists():
            project_id, key = marker.read_text().split()
            print(f"reusing the data loaded in {data_dir}")
        else:
            project_id, key = asyncio.run(_project(dsn))
            book = asyncio.run(load_price_book(dsn, settings.unknown_model_usd_per_call))
            print(f"loading {args.sessions:,} sessions x {spans_per_session} spans over {args.days:g} days "
                  f"into {data_dir} ({args.workers} workers)", flush=True)
            began = time.monotonic()
            load(store, book, project_id, args.sessions, spans_per_session, args.days, args.workers)
            print(f"  load took {time.monotonic() - began:,.0f} s", flush=True)
            marker.write_text(f"{project_id} {key}")
        wait_for_merges(store, 300)
    finally:
        store.close()

    port = 8700 + os.getpid() % 200
    log = open(data_dir / "api.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "loadtests.bench_query", "--serve", str(data_dir), dsn, str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the API process did not start:\n{(data_dir / 'api.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/api/readiness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        print(f"measuring through {base} ({args.sessions:,} sessions, {args.sessions * spans_per_session:,} spans)")
        results = asyncio.run(measure(base, key, args.sessions, args.requests, args.clients, args.seconds,
                                      args.think_ms / 1000, lean=not args.httpx, server_pid=server.pid))
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        if not args.keep and not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)

    print(f"\n{'query':<28}{'p50 ms':>9}{'p95 ms':>9}{'target p95':>12}{'LangSight':>11}{'errors':>8}")
    labels = {"list_24h": "sessions list, 24 h", "list_30d": "sessions list, 30 days", "trace": "session trace",
              "mixed": f"mixed, {args.clients} clients"}
    for name, (p50, p95, errors) in results.items():
        langsight = f"{LANGSIGHT[name]:.0f}" if LANGSIGHT[name] else "-"
        verdict = "ok" if p95 < TARGETS[name] and not errors else "MISSED"
        print(f"{labels[name]:<28}{p50:>9.1f}{p95:>9.1f}{'< ' + format(TARGETS[name], '.0f'):>12}{langsight:>11}"
              f"{errors:>8}  {verdict}")
    print("LangSight's figures are its published ones at 1M spans (list) and per trace; ours are measured above.")


if __name__ == "__main__":
    main()
