-- The status of each server and tool's latest call per hour, so that "last status" is read from
-- the statistics instead of searching raw spans (ordered by session, not time) for the newest
-- call. Rows written before this migration have an empty state here and read as no status.
-- The view is dropped and created again with the column; `spanstream replay` rebuilds the
-- statistics from the view's own SELECT, so it picks the column up too.
ALTER TABLE mcp_server_stats ADD COLUMN IF NOT EXISTS
    last_status AggregateFunction(argMax, LowCardinality(String), DateTime64(6, 'UTC'));

DROP VIEW IF EXISTS mcp_server_stats_from_spans;

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
    max(started_at) AS last_call_at,
    argMaxState(status, started_at) AS last_status
FROM spans
WHERE span_type = 'tool_call' AND server_name != ''
GROUP BY project_id, server_name, tool_name, hour;
