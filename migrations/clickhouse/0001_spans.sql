-- Every span as received (Span v1). At-least-once delivery can write a span twice, so the
-- table replaces on (project_id, session_id, span_id), keeping the newest ingested_at, and
-- readers query it with FINAL. Ordered by session so a session's trace is one contiguous range.
-- ClickHouse has no transactional DDL: every statement here must be safe to run again.
CREATE TABLE IF NOT EXISTS spans
(
    project_id             LowCardinality(String),
    session_id             String,
    trace_id               String,
    span_id                String,
    parent_span_id         String,
    span_type              LowCardinality(String),
    name                   String,
    agent_name             LowCardinality(String),
    target_agent_name      LowCardinality(String),
    server_name            LowCardinality(String),
    tool_name              LowCardinality(String),
    model_id               LowCardinality(String),
    status                 LowCardinality(String),
    error                  String CODEC(ZSTD(1)),
    started_at             DateTime64(6, 'UTC'),
    ended_at               DateTime64(6, 'UTC'),
    latency_ms             Float64,
    input_tokens           UInt64,
    output_tokens          UInt64,
    cache_read_tokens      UInt64,
    cache_creation_tokens  UInt64,
    thinking_tokens        UInt64,
    finish_reason          LowCardinality(String),
    input_args             String CODEC(ZSTD(3)),
    output_result          String CODEC(ZSTD(3)),
    llm_input              String CODEC(ZSTD(3)),
    llm_output             String CODEC(ZSTD(3)),
    attributes             String CODEC(ZSTD(3)),
    schema_version         UInt16,
    ingested_at            DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (project_id, session_id, span_id)
TTL toDateTime(started_at) + INTERVAL 90 DAY;
