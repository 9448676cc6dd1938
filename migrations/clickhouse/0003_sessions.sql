-- Sessions as the stream worker folds them, the latest version per session wins. Not partitioned
-- by time: a late span can move a session's first_at, and a replacing engine only collapses rows
-- within one partition, so the partition key must never change for a session.
CREATE TABLE IF NOT EXISTS sessions
(
    project_id             LowCardinality(String),
    session_id             String,
    version                UInt64,
    first_at               DateTime64(6, 'UTC'),
    last_at                DateTime64(6, 'UTC'),
    duration_ms            Float64,
    spans                  UInt32,
    llm_calls              UInt32,
    tool_calls             UInt32,
    failed_calls           UInt32,
    errors                 UInt32,
    agents                 Array(LowCardinality(String)),
    servers                Array(LowCardinality(String)),
    models                 Array(LowCardinality(String)),
    input_tokens           UInt64,
    output_tokens          UInt64,
    cache_read_tokens      UInt64,
    cache_creation_tokens  UInt64,
    thinking_tokens        UInt64,
    cost_nano_usd          UInt64,
    unpriced_calls         UInt32,
    health_tag             LowCardinality(String),
    status                 LowCardinality(String),
    INDEX last_at_minmax last_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, session_id);

-- Each session's usage and cost per hour, model, agent and MCP server; summed over sessions
-- (FINAL) this is the cost rollup, identical whatever order or how often spans arrived.
CREATE TABLE IF NOT EXISTS session_costs
(
    project_id             LowCardinality(String),
    session_id             String,
    hour                   DateTime('UTC'),
    model_id               LowCardinality(String),
    agent_name             LowCardinality(String),
    server_name            LowCardinality(String),
    version                UInt64,
    calls                  UInt32,
    input_tokens           UInt64,
    output_tokens          UInt64,
    cache_read_tokens      UInt64,
    cache_creation_tokens  UInt64,
    thinking_tokens        UInt64,
    cost_nano_usd          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, session_id, hour, model_id, agent_name, server_name);

-- Every change of a session's health tag, in version order.
CREATE TABLE IF NOT EXISTS session_health
(
    project_id    LowCardinality(String),
    session_id    String,
    version       UInt64,
    health_tag    LowCardinality(String),
    previous_tag  LowCardinality(String),
    at            DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, session_id, version);
