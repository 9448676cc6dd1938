"""The HTTP layer: ingestion and queries over the materialized views, and metadata services."""
