-- Per project, MCP server, tool and hour: calls, failures and latency, kept up to date by a
-- materialized view as spans are written. Spans can be written twice (at-least-once delivery),
-- so counts are distinct span ids (uniqExact), never row counts; the latency quantiles are
-- estimates, in which a span written twice weighs twice.
CREATE TABLE IF NOT EXISTS mcp_server_stats
(
    project_id    LowCardinality(String),
    server_name   LowCardinality(String),
    tool_name     LowCardinality(String),
    hour          DateTime('UTC'),
    calls         AggregateFunction(uniqExact, String),
    failures      AggregateFunction(uniqExactIf, String, UInt8),
    timeouts      AggregateFunction(uniqExactIf, String, UInt8),
    latency_ms    AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    last_call_at  SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, server_name, tool_name, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS mcp_server_stats_from_spans TO mcp_server_stats AS
SELECT
    project_id,
    server_name,
    tool_name,
    toStartOfHour(started_at) AS hour,
    uniqExactState(span_id) AS calls,
    uniqExactIfState(span_id, toUInt8(status IN ('error', 'timeout'))) AS failures,
    uniqExactIfState(span_id, toUInt8(status = 'timeout')) AS timeouts,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
    max(started_at) AS last_call_at
FROM spans
WHERE span_type = 'tool_call' AND server_name != ''
GROUP BY project_id, server_name, tool_name, hour;
