"""Process settings, read once from the environment (prefix SPANSTREAM_) at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything a Spanstream process needs to find its dependencies.

    Defaults describe the embedded local setup started by `spanstream infra up`:
    Kafka and PostgreSQL on loopback, ClickHouse as chdb inside `data_dir`.
    """

    model_config = SettingsConfigDict(env_prefix="SPANSTREAM_", frozen=True, extra="ignore")

    data_dir: Path = REPO_ROOT / ".data"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # 54329 stays clear of a system PostgreSQL on 5432.
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:54329/spanstream"
    # Unset: embedded chdb under data_dir. Set (http://host:8123): a ClickHouse server.
    clickhouse_url: str | None = None
    clickhouse_database: str = "spanstream"
    # Reuse an identical read's answer until a table it reads is written (embedded store only:
    # spanstream/result_cache.py). Off, every request runs its query.
    result_cache: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    spans_topic: str = "spans"
    spans_partitions: int = Field(default=6, ge=1)
    # Replay rebuilds views from what the topic retains, so retention bounds what can be rebuilt.
    spans_retention_hours: float = Field(default=7 * 24, gt=0)
    # How long ClickHouse keeps raw spans (the derived views are kept until deleted).
    spans_ttl_days: int = Field(default=90, ge=1)
    sessions_topic: str = "sessions"
    health_topic: str = "health"
    # MCP server health check results and fired alerts: JSON records with a `project_id`, relayed
    # by the live feed as `health:check` and `alert` (docs/live-feed.md).
    health_checks_topic: str = "health.checks"
    alerts_topic: str = "alerts"
    # What the health-check sink derives from the checks: schema drift and status changes (down,
    # recovered, degraded), for alerting (docs/health-checks.md).
    health_check_events_topic: str = "health.checks.events"
    # Health rules (docs/health-tags.md).
    loop_threshold: int = Field(default=3, ge=2)
    # Session budgets, JSON: {"<project id>": {"tokens": 100000, "usd": 2.5},
    # "<project id>/<agent name>": {"usd": 0.5}}. Over budget: the `budget_exceeded` tag.
    budgets: dict[str, dict[str, float]] = Field(default_factory=dict)
    # An open, otherwise healthy session with no span for this long reads as `incomplete`.
    incomplete_after_seconds: float = Field(default=30 * 60, gt=0)
    # Spans priced with an unknown model are charged this per call and flagged.
    unknown_model_usd_per_call: float = Field(default=0.0, ge=0)
    pricing_refresh_seconds: float = Field(default=30.0, gt=0)
    # HTTP ingestion: bodies larger than this (after gzip) are answered 413.
    ingest_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Per API key and API process; 0 turns the limit off. The burst is two seconds' worth.
    ingest_rate_limit_spans_per_second: float = Field(default=100_000, ge=0)
    # How long a request waits for the broker's ack before answering 503.
    ingest_ack_timeout_seconds: float = Field(default=10, gt=0)
    api_access_log: bool = False
    # Live feed (GET /api/live/events, docs/live-feed.md). A keepalive comment goes to an idle
    # client this often, so proxies do not close the connection.
    live_keepalive_seconds: float = Field(default=15.0, gt=0)
    # Per API process; the next client gets an `error` event and the stream closes.
    live_max_clients: int = Field(default=1000, ge=1)
    # Events waiting for one slow client; past this its oldest are dropped (and counted).
    live_client_buffer: int = Field(default=200, ge=1)
    # The feed's reader hands events to clients at most this often: each client's task then
    # wakes once per interval, not once per event, which is what lets one process serve a
    # thousand clients at a thousand events a second.
    live_flush_seconds: float = Field(default=0.05, gt=0, le=1)
    # MCP health checks (docs/health-checks.md). `spanstream serve` runs a prober unless this is
    # off; `spanstream probe` runs one alone. Servers are split into `probe_shards` by a hash of
    # project and name; a prober probes the shards whose PostgreSQL advisory lock it holds, so two
    # probers never probe one server, and a standby takes over a shard whose prober died.
    probe_in_serve: bool = True
    # A stdio server is a command the prober runs on its own host, so it is off unless turned on
    # (a single-tenant deployment); even then registering one needs the admin role. Off: none
    # can be registered and the prober skips those already registered.
    probe_stdio: bool = False
    probe_shards: int = Field(default=1, ge=1, le=1024)
    # Unset: take any shard that is free; set: only this one (0 .. probe_shards - 1).
    probe_shard: int | None = Field(default=None, ge=0)
    # How often the prober rereads the registered servers and tries to take free shards.
    probe_refresh_seconds: float = Field(default=10.0, gt=0)
    # Probes in flight at once per prober: each may hold a child process or a connection.
    probe_concurrency: int = Field(default=16, ge=1, le=1024)
    # Caps on every query the read endpoints run, so one expensive request (a year-long window,
    # a huge session) answers 503/504 instead of starving every other caller of the one store.
    query_max_execution_seconds: float = Field(default=10.0, gt=0)
    query_max_memory_bytes: int = Field(default=1024**3, ge=16 * 1024**2)
    # Spans of one trace page; a larger session pages through its spans with a cursor. A session
    # of at most this many spans is read whole for its first page.
    trace_page_max_spans: int = Field(default=5000, ge=10)
    # Caps on one analyst query through POST /api/sql (docs/analytics.md), enforced by ClickHouse.
    sql_max_execution_seconds: float = Field(default=10, gt=0, le=600)
    sql_max_memory_bytes: int = Field(default=512 * 1024 * 1024, ge=16 * 1024 * 1024)
    sql_max_result_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    # The key `spanstream sql` and `spanstream sessions` send; unset: the one in data_dir/dev-api-key.
    api_key: str | None = None
    # Operator work through the API (a replay on the embedded store); unset: a token the server
    # keeps in data_dir/operator-token (spanstream/operator.py).
    operator_token: str | None = None
    # Logins: this many consecutive wrong passwords lock the account for login_lockout_seconds
    # (kept in PostgreSQL, so a restart does not lift it). A login session lasts login_session_hours.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: float = Field(default=900, gt=0)
    # One client address failing this many logins within login_ip_window_seconds, whatever the
    # accounts, is refused (429) for login_ip_block_seconds; 0 turns it off. Behind a proxy, the
    # address is the one uvicorn's FORWARDED_ALLOW_IPS lets the proxy name (X-Forwarded-For).
    login_ip_max_failures: int = Field(default=50, ge=0)
    login_ip_window_seconds: float = Field(default=600, gt=0)
    login_ip_block_seconds: float = Field(default=900, gt=0)
    login_session_hours: float = Field(default=7 * 24, gt=0)
    invite_expiry_hours: float = Field(default=72, gt=0)
    # A revoked API key keeps working on other API processes for at most this long.
    api_key_cache_seconds: float = Field(default=30, ge=0)
    # Sink batching: whichever comes first flushes a batch to ClickHouse.
    sink_batch_size: int = Field(default=5000, ge=1)
    sink_batch_seconds: float = Field(default=0.5, gt=0)
    # The spans table's inserts gather for longer: a session shows in the list (the sessions
    # table) without them, only its trace waits, and chdb spent ~18 µs a span on a 5,000-span
    # insert against ~12 on a 20,000-span one (a fixed ~38 ms an insert, and fewer parts to merge).
    spans_sink_batch_seconds: float = Field(default=1.0, gt=0)
    worker_id: str = "spanstream-worker"
    # Fold worker processes `spanstream serve` and `spanstream worker` start as children.
    fold_processes: int = Field(default=1, ge=0, le=64)
    # Which fold worker on this machine this is: each keeps its local table store apart.
    fold_index: int = Field(default=0, ge=0)
    # Faust's table store: rocksdb:// (on disk, through rocksdict) or memory://.
    table_store: str = "rocksdb://"
    # Set: GET /metrics wants `Authorization: Bearer <token>`. Unset: it is open, like /api/liveness.
    metrics_token: str | None = None
    # A process without the API (`spanstream worker`, a fold run on its own) serves its metrics
    # on this port; 0: none. Fold children of `serve` are shown by the parent's /metrics.
    metrics_port: int = Field(default=0, ge=0, le=65535)

    # Alerts (docs/alerts.md): the engine's settings; every state change is a record on alerts_topic.
    # Off: this process neither evaluates rules nor sends webhooks (another one must).
    alerts_engine: bool = True
    # One group for every engine, so each health record is handled by one of them.
    alerts_consumer_group: str = "spanstream-alerts"
    # How often an engine looks for due webhook deliveries, repeats and ended snoozes.
    alerts_poll_seconds: float = Field(default=1.0, gt=0)
    # How long the engine reuses a project's rules before reading them again.
    alerts_rules_cache_seconds: float = Field(default=2.0, ge=0)
    # How often SLO and cost-budget rules are evaluated against ClickHouse.
    alerts_evaluate_seconds: float = Field(default=60.0, gt=0)
    # A firing incident nobody acknowledged is sent again this often; 0: never.
    alerts_repeat_seconds: float = Field(default=3600.0, ge=0)
    # Health records older than this (Kafka timestamp) are stale news and open no incident.
    alerts_max_event_age_seconds: float = Field(default=6 * 3600.0, gt=0)
    alerts_webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Attempts per delivery; the wait before attempt n+1 is alerts_retry_base_seconds * 2**(n-1)
    # (10 s base: 10, 20, 40, 80, 160 s, about five minutes over six attempts).
    alerts_webhook_max_attempts: int = Field(default=6, ge=1, le=50)
    alerts_retry_base_seconds: float = Field(default=10.0, gt=0)

    @field_validator("clickhouse_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://", "chdb://")):
            raise ValueError("SPANSTREAM_CLICKHOUSE_URL must start with http://, https:// or chdb://")
        return value

    @property
    def clickhouse_dsn(self) -> str:
        """The clickhouse-connect DSN: the server URL if set, else chdb inside data_dir."""
        return self.clickhouse_url or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def clickhouse_embedded(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")


def load_settings(**overrides) -> Settings:
    """Parse settings once at the entry point; a bad value fails here with a clear message."""
    return Settings(**overrides)
