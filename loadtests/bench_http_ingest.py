"""How many spans a second one ingestion API process accepts from concurrent clients POSTing LangSight batches."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from loadtests.generate import generate_sessions
from spanstream.settings import load_settings

INGEST_PATH = "/api/traces/spans"
LIVENESS_PATH = "/api/liveness"
# Sessions of 25 spans in batches of 100: each request carries several sessions, as an SDK
# buffering a busy agent process would send them, so the server has to group spans by session.
SPANS_PER_SESSION = 25
RETRY_AFTER_CAP_S = 5.0
SERVER_START_TIMEOUT_S = 90.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def request_bodies(seed: int, bodies: int, batch: int, spans_per_session: int) -> tuple[list[bytes], int]:
    """`bodies` JSON lists of `batch` spans each, as a LangSight SDK sends them (no project_id:
    the key decides it). Returns the bodies and how many spans they hold."""
    sessions_needed = math.ceil(bodies * batch / spans_per_session)
    # Recent timestamps, so spans of a full deployment are not dropped by the store's 90-day TTL.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    spans = [span for session in generate_sessions(seed, sessions_needed, spans_per_session, "bench", start)
             for span in session][: bodies * batch]
    encoded = [
        json.dumps(
            [span.model_dump(mode="json", exclude_none=True, exclude={"project_id"}) for span in spans[i : i + batch]],
            separators=(",", ":"),
        ).encode()
        for i in range(0, len(spans), batch)
    ]
    return encoded, len(spans)


@dataclass
class Completion:
    done_at: float
    latency_s: float
    outcome: str  # the HTTP status, or the name of the connection error
    accepted: int = 0
    rejected: int = 0


@dataclass
class Run:
    """Everything the clients observed; the summary keeps only what completed inside the window."""

    completions: list[Completion] = field(default_factory=list)
    accepted: int = 0  # running totals for the progress lines
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    rejection_sample: str | None = None
    error_sample: str | None = None


async def client(
    http: aiohttp.ClientSession, url: str, bodies: list[bytes], first: int, step: int, run: Run, stop: asyncio.Event,
    interval: float = 0.0,
) -> None:
    """Sends bodies back to back (closed loop), or one every `interval` seconds (paced, open
    loop), honouring Retry-After as a well-behaved SDK would. Paced latency counts from when a
    request was due, so a server that falls behind cannot hide it (no coordinated omission)."""
    index = first
    due = time.perf_counter() + interval * first / step
    while not stop.is_set():
        body = bodies[index % len(bodies)]
        index += step
        if interval:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent, due = due, due + interval
        else:
            sent = time.perf_counter()
        wait_s = 0.0
        try:
            async with http.post(url, data=body) as response:
                payload = await response.read()
                outcome, accepted, rejected = str(response.status), 0, 0
                if 200 <= response.status < 300:
                    try:
                        answer = json.loads(payload)
                        accepted, rejected = int(answer["accepted"]), int(answer["rejected"])
                    except (ValueError, KeyError, TypeError):
                        outcome = f"{response.status} (body not {{accepted, rejected}})"
                        run.error_sample = run.error_sample or payload[:500].decode(errors="replace")
                    if rejected and run.rejection_sample is None:
                        run.rejection_sample = payload[:1000].decode(errors="replace")
                elif response.status in (429, 503):
                    wait_s = _retry_after(response.headers.get("Retry-After"))
                elif run.error_sample is None:
                    run.error_sample = f"{response.status}: {payload[:500].decode(errors='replace')}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            outcome, accepted, rejected = type(error).__name__, 0, 0
            run.error_sample = run.error_sample or f"{type(error).__name__}: {error}"
            wait_s = 0.1  # a refused connection fails at once: do not spin
        done = time.perf_counter()
        run.completions.append(Completion(done, done - sent, outcome, accepted, rejected))
        run.requests += 1
        run.accepted += accepted
        if outcome != "207":
            run.failures[outcome] += 1
        if wait_s:
            try:
                await asyncio.wait_for(stop.wait(), wait_s)
            except asyncio.TimeoutError:
                pass


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP_S) if value else 1.0
    except ValueError:
        return 1.0  # an HTTP date: not worth parsing for a benchmark


@dataclass
class ProcessUsage:
    cpu_s: float
    rss_kib: int
    peak_rss_kib: int


def process_usage(pid: int) -> ProcessUsage | None:
    """CPU seconds (user + system, all threads) and resident memory of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # Fields after the command name, which may itself hold spaces: utime and stime are the 12th and 13th.
    fields = stat.rsplit(")", 1)[1].split()
    memory = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Vm")}
    return ProcessUsage((int(fields[11]) + int(fields[12])) / CLOCK_TICKS, memory.get("VmRSS", 0),
                        memory.get("VmHWM", 0))


def _spanstream_command() -> list[str]:
    script = Path(sys.executable).parent / "spanstream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "spanstream.cli"]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


class IngestServer:
    """`spanstream ingest` as a child process on the port of --url, with its log in a temp file.

    It publishes to a topic of its own, deleted at the end, so that a benchmark does not pour
    hundreds of thousands of spans into the `spans` topic a local worker may be reading;
    SPANSTREAM_SPANS_TOPIC, if set, is used instead and kept."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.log_path = Path(tempfile.mkstemp(prefix="spanstream-ingest-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self.own_topic = "SPANSTREAM_SPANS_TOPIC" not in os.environ
        self.topic = f"spans-bench-{uuid.uuid4().hex[:8]}" if self.own_topic else os.environ["SPANSTREAM_SPANS_TOPIC"]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    async def start(self, url: str) -> None:
        if _port_in_use(self.host, self.port):
            raise RuntimeError(f"something already listens on {self.host}:{self.port}; choose a free port in --url")
        env = {**os.environ, "SPANSTREAM_API_HOST": self.host, "SPANSTREAM_API_PORT": str(self.port),
               "SPANSTREAM_SPANS_TOPIC": self.topic}
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [*_spanstream_command(), "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        print(f"started `spanstream ingest` (pid {self.process.pid}) on port {self.port}, publishing to topic "
              f"{self.topic}, log {self.log_path}")
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"spanstream ingest exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    async with http.get(url + LIVENESS_PATH) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"spanstream ingest did not answer {LIVENESS_PATH} within {SERVER_START_TIMEOUT_S:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                print("spanstream ingest did not stop within 30 s of SIGINT; killing it", file=sys.stderr)
                self.process.kill()
                self.process.wait()
        if self.own_topic:
            self._delete_topics()
        return self.process.returncode

    def _delete_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": load_settings().kafka_bootstrap})
        try:
            existing = set(admin.list_topics(timeout=10).topics)
            names = [name for name in (self.topic, f"{self.topic}.dlq") if name in existing]
            for future in (admin.delete_topics(names, operation_timeout=30).values() if names else []):
                future.result()
        except KafkaException as error:
            print(f"could not delete topics {self.topic}*: {error}", file=sys.stderr)


def create_key(project: str = "bench") -> str:
    done = subprocess.run([*_spanstream_command(), "create-key", project], capture_output=True, text=True, timeout=120)
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"spanstream create-key {project} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return lines[-1]


async def preflight(http: aiohttp.ClientSession, url: str, body: bytes) -> str | None:
    """One liveness probe and one POST, so a wrong URL, key or missing endpoint fails in a
    sentence instead of as thousands of identical errors. Returns the problem, or None."""
    try:
        async with http.get(url + LIVENESS_PATH) as response:
            if response.status != 200:
                return f"GET {url}{LIVENESS_PATH} answered {response.status}; is this a Spanstream API?"
        async with http.post(url + INGEST_PATH, data=body) as response:
            text = (await response.read())[:500].decode(errors="replace")
            if response.status in (207, 429, 503):
                return None
            hint = {401: " (wrong --key?)", 403: " (wrong --key?)", 404: " (is the endpoint implemented?)",
                    405: " (is the endpoint implemented?)"}.get(response.status, "")
            return f"POST {url}{INGEST_PATH} answered {response.status}{hint}: {text}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        return (f"cannot reach {url}: {type(error).__name__}: {error}. Start the API (`spanstream ingest`) "
                "or pass --start-server.")


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)] if sorted_values else float("nan")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(args: argparse.Namespace, key: str, bodies: list[bytes], server: IngestServer | None) -> int:
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:
        problem = await preflight(http, args.url, bodies[0])
        if problem:
            print(problem, file=sys.stderr)
            return 2
        run, stop = Run(), asyncio.Event()
        url = args.url + INGEST_PATH
        # --rate spans/s spread over the clients: each sends one request every `interval` seconds.
        interval = args.clients * args.batch / args.rate if args.rate else 0.0
        tasks = [asyncio.create_task(client(http, url, bodies, i, args.clients, run, stop, interval))
                 for i in range(args.clients)]
        begun = time.perf_counter()
        window_start, window_end = begun + args.warmup, begun + args.warmup + args.seconds
        client_cpu = server_cpu = None
        last_accepted = last_requests = 0
        tick = begun
        while tick < window_end:
            tick = min(tick + 1.0, window_end)
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            now = time.perf_counter()
            if client_cpu is None and now >= window_start:
                client_cpu = _cpu_self()
                server_cpu = process_usage(server.process.pid) if server else None
            phase = "warm-up" if now < window_start else "measure"
            failures = ", ".join(f"{k}: {v}" for k, v in run.failures.most_common()) or "none"
            print(f"  [{phase:>7} {now - begun:5.1f} s] {run.accepted - last_accepted:>9,} spans/s accepted, "
                  f"{run.requests - last_requests:>6,} requests/s completed; not 207 so far: {failures}", flush=True)
            last_accepted, last_requests = run.accepted, run.requests
        stop.set()
        client_cpu_s = _cpu_self() - (client_cpu or 0.0)
        server_after = process_usage(server.process.pid) if server else None
        await asyncio.wait(tasks, timeout=args.timeout + 1)
        for task in tasks:
            task.cancel()

    window = [c for c in run.completions if window_start <= c.done_at <= window_end]
    return summarize(args, window, run, client_cpu_s, server_cpu, server_after)


def summarize(args: argparse.Namespace, window: list[Completion], run: Run, client_cpu_s: float,
              server_before: ProcessUsage | None, server_after: ProcessUsage | None) -> int:
    seconds = args.seconds
    ok = [c for c in window if c.outcome == "207"]
    latencies = sorted(c.latency_s * 1000 for c in ok)
    accepted = sum(c.accepted for c in window)
    rejected = sum(c.rejected for c in window)
    others = Counter(c.outcome for c in window if c.outcome != "207")
    pacing = f"paced at {args.rate:,.0f} spans/s offered" if args.rate else "closed loop (as fast as answered)"
    print(f"\n{pacing}; {args.clients} clients, {args.batch} spans per request, measured {seconds:.0f} s after "
          f"{args.warmup:.0f} s of warm-up, against {args.url}{INGEST_PATH}")
    print(f"accepted spans/s   {accepted / seconds:>12,.0f}   ({accepted:,} spans)")
    print(f"requests/s (207)   {len(ok) / seconds:>12,.1f}   ({len(ok):,} requests)")
    if latencies:
        print(f"latency ms (207)   p50 {percentile(latencies, 50):.1f}   p95 {percentile(latencies, 95):.1f}   "
              f"p99 {percentile(latencies, 99):.1f}   max {latencies[-1]:.1f}")
    print(f"rejected spans     {rejected:>12,}")
    print("not 207            " + (", ".join(f"{k}: {v:,}" for k, v in others.most_common()) or "none"))
    if run.rejection_sample:
        print(f"a response with rejections: {run.rejection_sample}")
    if run.error_sample and others:
        print(f"first error: {run.error_sample}")
    print(f"client CPU         {client_cpu_s:.1f} s in the window ({client_cpu_s / seconds:.2f} cores)")
    if server_before and server_after:
        cpu = server_after.cpu_s - server_before.cpu_s
        print(f"server CPU         {cpu:.1f} s in the window ({cpu / seconds:.2f} cores); "
              f"{server_after.cpu_s:.1f} s since start")
        print(f"server memory      peak RSS {server_after.peak_rss_kib / 1024:.0f} MiB, "
              f"RSS at the end {server_after.rss_kib / 1024:.0f} MiB")
    return 0 if ok else 1


async def bench(args: argparse.Namespace) -> int:
    print(f"encoding {args.pool} request bodies of {args.batch} spans ...", flush=True)
    bodies, spans = request_bodies(args.seed, args.pool, args.batch, args.spans_per_session)
    print(f"{len(bodies)} bodies, {spans:,} spans, {sum(map(len, bodies)) / len(bodies) / 1024:.1f} KiB per body")
    server = IngestServer(args.url) if args.start_server else None
    try:
        if server:
            await server.start(args.url)
            key = await asyncio.to_thread(create_key)
            print("created an API key for project 'bench'")
        else:
            key = args.key
        return await measure(args, key, bodies, server)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 2
    finally:
        if server:
            code = server.stop()
            # uvicorn re-raises the SIGINT it handled once shut down, so -SIGINT is a clean stop too.
            if code in (0, -signal.SIGINT):
                print(f"spanstream ingest stopped (exit code {code})")
            elif code is not None:
                print(f"spanstream ingest stopped with exit code {code}; log {server.log_path}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_http_ingest", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL (default %(default)s)")
    parser.add_argument("--key", help="API key sent in X-API-Key (not needed with --start-server)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent client tasks (default %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="spans per request (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured duration (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured warm-up seconds (default %(default)s)")
    parser.add_argument("--pool", type=int, default=200,
                        help="distinct request bodies, reused in turn (default %(default)s)")
    parser.add_argument("--spans-per-session", type=int, default=SPANS_PER_SESSION)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request is abandoned")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered spans/s, paced across the clients (default: as fast as answers come)")
    parser.add_argument("--start-server", action="store_true",
                        help="start `spanstream ingest` on the port of --url, create a key, stop it at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.url = args.url.rstrip("/")
    if not args.start_server and not args.key:
        parser.error("--key is required unless --start-server creates one")
    if min(args.clients, args.batch, args.pool, args.spans_per_session) < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--clients, --batch, --pool, --spans-per-session and --seconds must be positive")
    try:
        import uvloop  # the client's own overhead is what limits how hard one process can push

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        try:
            return runner.run(bench(args))
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
