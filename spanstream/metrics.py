"""Prometheus metrics of every Spanstream process.

They live in `spanstream/` because the API (HTTP, ingestion, the live feed), the stream side
(sinks, fold, batcher) and the MCP probes all count into them, and neither `streams/` nor `api/`
may import the other.

`spanstream serve` runs its fold workers as child processes. So that its one `/metrics` shows
theirs too, the command puts every process of the deployment in prometheus-client's
multiprocess mode (spanstream/metrics_dir.py, before anything imports prometheus_client); `/metrics`
then adds up the files all of them write. A process on its own (`spanstream ingest`, a fold on
another machine) uses the ordinary in-memory registry.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from spanstream.metrics_dir import process_dir

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "spanstream_http_requests_total", "HTTP requests answered, by route template (ids as {id}).",
    ["method", "path", "status"])
HTTP_DURATION = Histogram(
    "spanstream_http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
    ["method", "path"], buckets=LATENCY_BUCKETS)

SPANS_INGESTED = Counter(
    "spanstream_spans_ingested_total", "Spans accepted by HTTP or OTLP ingestion (acknowledged by Kafka).",
    ["endpoint"])
SPANS_REJECTED = Counter(
    "spanstream_spans_rejected_total", "Spans refused at ingestion, each answered with the reason.", ["endpoint"])
SPANS_DEAD_LETTERED = Counter(
    "spanstream_spans_dead_lettered_total", "Messages or batch items on `spans` that are not valid spans, "
    "sent to the dead-letter topic with the reason.")
SPANS_FOLDED = Counter("spanstream_spans_folded_total", "Spans folded into sessions (duplicates included).")

SINK_BATCH_ROWS = Histogram(
    "spanstream_sink_batch_rows", "Rows per ClickHouse insert.", ["table"],
    buckets=(1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000))
SINK_BATCH_SECONDS = Histogram(
    "spanstream_sink_batch_seconds", "Time from the start of an insert until it is durable, retries included.",
    ["table"], buckets=LATENCY_BUCKETS)
SINK_RETRIES = Counter("spanstream_sink_retries_total", "ClickHouse inserts that failed and were tried again.", ["table"])

SSE_CONNECTIONS = Gauge(
    "spanstream_sse_connections", "Live-feed clients connected.", multiprocess_mode="livesum")
SSE_DROPPED = Counter(
    "spanstream_sse_events_dropped_total", "Live-feed events dropped because a client's buffer was full.")

HEALTH_CHECKS = Counter(
    "spanstream_health_checks_total", "MCP server health checks, by project (id), server and resulting status.",
    ["project", "server", "status"])


def process_metrics():
    """What this process shows: the files of every process of the deployment in multiprocess
    mode, else its own registry."""
    directory = process_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, directory)
    return registry


def serve_metrics(port: int, host: str) -> None:
    """For a process without the API: its metrics over HTTP on a thread of their own."""
    start_http_server(port, host, registry=process_metrics())
