"""Applies the numbered SQL files in migrations/{postgres,clickhouse} once each, in order.

Each store records what it applied (version, name, checksum) in its own `schema_migrations`
table, so a second run changes nothing and an applied file that was edited is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import REPO_ROOT, Settings

MIGRATIONS_DIR = REPO_ROOT / "migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every runner of this database.
_PG_LOCK_ID = 0x5350414E

class MigrationError(RuntimeError):
    """A migration file is malformed, was changed after being applied, or failed."""

class PostgresUnavailable(MigrationError):
    """PostgreSQL does not answer or refuses the connection."""

    def __init__(self, dsn: str, error: Exception) -> None:
        where = dsn.rsplit("@", 1)[-1]  # never echo a password
        super().__init__(
            f"PostgreSQL does not answer at {where} ({error}). "
            "Start it with `spanstream infra up`, or set SPANSTREAM_POSTGRES_DSN."
        )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

def load_migrations(store: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted((directory / store).glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), path.stem, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two {store} migrations share a version number: {versions}")
    return migrations

def _check_unchanged(migration: Migration, recorded_checksum: str) -> None:
    if recorded_checksum != migration.checksum:
        raise MigrationError(
            f"migration {migration.name} was edited after it was applied; "
            "add a new numbered migration instead"
        )

def split_statements(sql: str) -> list[str]:
    """ClickHouse takes one statement per request; files separate them with `;` at line end."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in re.split(r";\s*(?:\n|$)", body) if part.strip()]

async def connect_postgres(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as error:
        raise PostgresUnavailable(dsn, error) from error


async def migrate_postgres(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies pending Postgres migrations, each in its own transaction; returns their names."""
    applied: list[str] = []
    connection = await connect_postgres(dsn)
    try:
        # Serialises concurrent runners (two processes starting at once).
        await connection.execute("SELECT pg_advisory_lock($1)", _PG_LOCK_ID)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["checksum"] for r in await connection.fetch("SELECT version, checksum FROM schema_migrations")}
        for migration in load_migrations("postgres", directory):
            if migration.version in done:
                _check_unchanged(migration, done[migration.version])
                continue
            try:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version, migration.name, migration.checksum,
                    )
            except asyncpg.PostgresError as error:
                raise MigrationError(f"postgres migration {migration.name} failed: {error}") from error
            applied.append(migration.name)
    finally:
        await connection.close()
    return applied

def migrate_clickhouse(store: ClickHouseStore, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies pending ClickHouse migrations; their statements must be idempotent (no DDL transactions)."""
    store.command_sync(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version UInt32, name String, checksum String, applied_at DateTime DEFAULT now())
           ENGINE = ReplacingMergeTree ORDER BY version"""
    )
    done = {r["version"]: r["checksum"] for r in store.query_sync("SELECT version, checksum FROM schema_migrations FINAL")}
    applied: list[str] = []
    for migration in load_migrations("clickhouse", directory):
        if migration.version in done:
            _check_unchanged(migration, done[migration.version])
            continue
        for statement in split_statements(migration.sql):
            try:
                store.command_sync(statement)
            except Exception as error:  # the driver raises several unrelated types
                raise MigrationError(f"clickhouse migration {migration.name} failed: {error}") from error
        store.insert_sync(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            ["version", "name", "checksum"],
        )
        applied.append(migration.name)
    return applied


def migrate_all(settings: Settings) -> dict[str, list[str]]:
    """Migrates both stores; opens (and closes) the ClickHouse store for it."""
    postgres = asyncio.run(migrate_postgres(settings.postgres_dsn))
    store = ClickHouseStore(settings).open()
    try:
        clickhouse = migrate_clickhouse(store)
        apply_spans_ttl(store, settings.spans_ttl_days)
    finally:
        store.close()
    return {"postgres": postgres, "clickhouse": clickhouse}


def apply_spans_ttl(store: ClickHouseStore, days: int) -> bool:
    """Makes the spans table keep `days` days (SPANSTREAM_SPANS_TTL_DAYS); True if it changed.
    A setting rather than a migration: retention is an operator's choice per deployment."""
    wanted = f"TTL toDateTime(started_at) + toIntervalDay({days})"
    [table] = store.query_sync(
        "SELECT create_table_query AS ddl FROM system.tables WHERE database = currentDatabase() AND name = 'spans'"
    )
    if wanted in table["ddl"]:
        return False
    store.command_sync(f"ALTER TABLE spans MODIFY TTL toDateTime(started_at) + toIntervalDay({int(days)})")
    return True
