-- Which payload fields ingestion cut to their cap, so a reader knows the text is incomplete.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS truncated_fields Array(LowCardinality(String)) AFTER schema_version;
