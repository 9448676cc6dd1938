-- MCP server health checks (docs/health-checks.md), written by the health-check sink from the
-- `health.checks` topic. Delivery is at least once, so every table replaces on a key a
-- redelivered record repeats: one row per check, per event, per server.

-- Every check, newest last. check_id is the prober's id for the probe, the same on redelivery.
CREATE TABLE IF NOT EXISTS mcp_health_checks
(
    project_id        LowCardinality(String),
    server_name       String,
    checked_at        DateTime64(6, 'UTC'),
    check_id          String,
    server_id         String,
    transport         LowCardinality(String),
    status            LowCardinality(String),
    latency_ms        Nullable(Float64),
    initialize_ms     Nullable(Float64),
    list_tools_ms     Nullable(Float64),
    tool_count        Nullable(UInt32),
    tools_hash        String,
    tool_names        Array(String),
    error             String CODEC(ZSTD(1)),
    server_version    String,
    protocol_version  LowCardinality(String),
    prober            LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(checked_at)
ORDER BY (project_id, server_name, checked_at, check_id);

-- Schema drift (the tools hash changed from the previous check's) and status changes (went
-- down, recovered, degraded), each derived from one check and named by it, so a replay of that
-- check collapses onto the same row.
CREATE TABLE IF NOT EXISTS mcp_health_events
(
    project_id        LowCardinality(String),
    server_name       String,
    at                DateTime64(6, 'UTC'),
    kind              LowCardinality(String),
    check_id          String,
    previous_check_id String,
    status            LowCardinality(String),
    previous_status   LowCardinality(String),
    old_hash          String,
    new_hash          String,
    tools_added       Array(String),
    tools_removed     Array(String),
    tools_changed     Array(String),
    error             String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, server_name, at, kind, check_id);

-- The latest check per server: the newest checked_at wins, whichever order rows arrive in.
CREATE TABLE IF NOT EXISTS mcp_server_health
(
    project_id        LowCardinality(String),
    server_name       String,
    checked_at        DateTime64(6, 'UTC'),
    check_id          String,
    status            LowCardinality(String),
    latency_ms        Nullable(Float64),
    tool_count        Nullable(UInt32),
    tools_hash        String,
    error             String CODEC(ZSTD(1)),
    status_since      DateTime64(6, 'UTC'),
    last_up_at        Nullable(DateTime64(6, 'UTC'))
)
ENGINE = ReplacingMergeTree(checked_at)
ORDER BY (project_id, server_name);
