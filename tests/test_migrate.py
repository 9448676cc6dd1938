"""Migrations: applied once, a second run changes nothing, an edited one is refused."""

import asyncio
import shutil

import asyncpg
import pytest

from spanstream.migrate import MIGRATIONS_DIR, MigrationError, migrate_clickhouse, migrate_postgres


async def _catalog(dsn: str) -> list[tuple]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' ORDER BY table_name, column_name"""
        )
        migrations = await connection.fetch("SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version")
    finally:
        await connection.close()
    return [tuple(r) for r in rows] + [tuple(r) for r in migrations]


def test_postgres_migrations_twice_change_nothing(postgres_dsn):
    # The session fixture already applied them once.
    before = asyncio.run(_catalog(postgres_dsn))
    assert {row[0] for row in before if isinstance(row[0], str)} >= {"projects", "api_keys", "schema_migrations"}
    assert asyncio.run(migrate_postgres(postgres_dsn)) == []
    assert asyncio.run(_catalog(postgres_dsn)) == before


def test_clickhouse_migrations_twice_change_nothing(store):
    def snapshot():
        return (
            store.query_sync("SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() ORDER BY name"),
            store.query_sync("SELECT version, checksum, applied_at FROM schema_migrations FINAL ORDER BY version"),
        )

    before = snapshot()
    assert "spans" in {t["name"] for t in before[0]}
    assert migrate_clickhouse(store) == []
    assert snapshot() == before


def test_an_applied_migration_that_was_edited_is_refused(store, tmp_path):
    shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations")
    edited = tmp_path / "migrations" / "clickhouse" / "0001_spans.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="0001_spans was edited after it was applied"):
        migrate_clickhouse(store, tmp_path / "migrations")


def test_a_badly_named_migration_is_refused(store, tmp_path):
    (tmp_path / "clickhouse").mkdir()
    (tmp_path / "clickhouse" / "spans.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        migrate_clickhouse(store, tmp_path)


def test_spans_retention_follows_the_setting(store):
    from spanstream.migrate import apply_spans_ttl

    def ddl() -> str:
        return store.query_sync("SELECT create_table_query AS q FROM system.tables "
                                "WHERE database = currentDatabase() AND name = 'spans'")[0]["q"]

    try:
        assert apply_spans_ttl(store, 30) is True
        assert "toIntervalDay(30)" in ddl()
        assert apply_spans_ttl(store, 30) is False  # already so: nothing to do
    finally:
        apply_spans_ttl(store, 90)
    assert "toIntervalDay(90)" in ddl()


def test_mcp_server_stats_count_each_call_once_however_often_it_is_written(store):
    from datetime import UTC, datetime, timedelta

    from schemas.span import Span
    from streams.sink import SPAN_COLUMNS, span_row

    at = datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
    spans = [
        Span(project_id="stats-test", session_id="s", span_id=f"c{i}", span_type="tool_call", server_name="docs-mcp",
             tool_name="search", status="error" if i == 0 else "success", started_at=at + timedelta(seconds=i),
             ended_at=at + timedelta(seconds=i, milliseconds=100 * (i + 1)))
        for i in range(4)
    ]
    rows = [span_row(span) for span in spans]
    store.insert_sync("spans", rows, SPAN_COLUMNS)
    store.insert_sync("spans", rows[:2], SPAN_COLUMNS)  # a redelivered batch
    [stats] = store.query_sync(
        """SELECT uniqExactMerge(calls) AS calls, uniqExactIfMerge(failures) AS failures,
                  quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_ms) AS latency
           FROM mcp_server_stats WHERE project_id = 'stats-test' AND server_name = 'docs-mcp'""")
    assert (stats["calls"], stats["failures"]) == (4, 1)
    assert 100 <= stats["latency"][0] <= 400
