-- What a session's trace and the sessions list show, each row packed into one JSON array column,
-- computed by ClickHouse as rows are inserted. A point lookup costs chdb about 0.35 ms per column
-- it reads, whatever the granule or type: the trace read 21 span columns, 23 session columns and
-- 11 cost columns, and now reads one each. Times are integer microseconds so that the packed text
-- never depends on a session's date_time_output_format, and toValidUTF8 keeps a string column
-- holding bytes that are not UTF-8 from making the whole row unreadable as JSON. The positions are
-- the contract with api/repositories/packed_rows.py (a test holds every field equal to its
-- column); the columns stay for everything else. Rows inserted before this migration get theirs
-- from the mutations below; until one finishes, reading the column computes it from the row's
-- columns.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS trace_row String MATERIALIZED toValidUTF8(toJSONString(tuple(
    span_id, parent_span_id, trace_id, span_type, name, agent_name, target_agent_name, server_name,
    tool_name, model_id, status, error, toUnixTimestamp64Micro(started_at), toUnixTimestamp64Micro(ended_at),
    latency_ms, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens,
    finish_reason))) CODEC(ZSTD(3));

ALTER TABLE spans MATERIALIZE COLUMN trace_row;

ALTER TABLE sessions ADD COLUMN IF NOT EXISTS trace_row String MATERIALIZED toValidUTF8(toJSONString(tuple(
    session_id, version, toUnixTimestamp64Micro(first_at), toUnixTimestamp64Micro(last_at), duration_ms,
    spans, llm_calls, tool_calls, failed_calls, errors, agents, servers, models, input_tokens,
    output_tokens, cache_read_tokens, cache_creation_tokens, thinking_tokens, cost_nano_usd,
    unpriced_calls, status))) CODEC(ZSTD(3));

ALTER TABLE sessions MATERIALIZE COLUMN trace_row;

ALTER TABLE session_costs ADD COLUMN IF NOT EXISTS trace_row String MATERIALIZED toValidUTF8(toJSONString(tuple(
    toUnixTimestamp(hour), model_id, agent_name, server_name, calls, input_tokens, output_tokens,
    cache_read_tokens, cache_creation_tokens, thinking_tokens, cost_nano_usd))) CODEC(ZSTD(3));

ALTER TABLE session_costs MATERIALIZE COLUMN trace_row;
