"""What replay does to ClickHouse: fresh `__replay` tables, ready-made inserts, the MCP statistics rebuild, the swaps.

Only the replay parent calls these: it is the one process that has the store open.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

from spanstream.clickhouse import ClickHouseStore
from spanstream.insert_bodies import FORMAT, INSERT_SETTINGS

log = logging.getLogger(__name__)

SUFFIX = "__replay"
MCP_STATS = "mcp_server_stats"
MCP_STATS_VIEW = "mcp_server_stats_from_spans"
INSERT_ATTEMPTS = 5


def fresh_tables(store: ClickHouseStore, tables: Sequence[str]) -> None:
    for table in tables:
        store.command_sync(f"DROP TABLE IF EXISTS {table}{SUFFIX}")
        store.command_sync(f"CREATE TABLE {table}{SUFFIX} AS {table}")


def raw_insert(store: ClickHouseStore, table: str, columns: Sequence[str], path: Path) -> None:
    """Inserts the JSONCompactColumns body in the file at `path` as it is. It belongs in
    ClickHouseStore beside insert_sync; until it moves there it takes the store's lock and
    client the same way. Embedded, chdb reads the file itself (clickhouse-connect's raw_insert
    would copy it to a file of its own first); a server is sent it. Transient failures are
    retried with back-off; a body ClickHouse keeps refusing fails the replay, which leaves the
    live tables as they were."""
    names = ", ".join(f"`{name}`" for name in columns)
    delay = 0.1
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            with store._lock:
                if store.embedded:
                    settings = ", ".join(f"{key} = '{value}'" for key, value in INSERT_SETTINGS.items())
                    quoted = str(path).replace("\\", "\\\\").replace("'", "\\'")
                    store._require().command(
                        f"INSERT INTO {table} ({names}) FROM INFILE '{quoted}' SETTINGS {settings} FORMAT {FORMAT}")
                else:
                    with open(path, "rb") as body:
                        store._require().raw_insert(table, list(columns), body, settings=INSERT_SETTINGS, fmt=FORMAT)
            return
        except Exception as error:  # noqa: BLE001 - any driver failure is retried a few times
            if attempt == INSERT_ATTEMPTS:
                raise
            log.warning("insert of %s into %s failed (%s); retrying in %.1fs", path, table, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def rebuild_mcp_server_stats(store: ClickHouseStore) -> None:
    """Fills `mcp_server_stats__replay` from `spans__replay` with the SELECT the live
    materialized view runs on every insert into `spans` (read from the view itself, so the two
    cannot drift apart). Inserts into `spans__replay` do not reach the view: it reads `spans`."""
    database = store.query_sync("SELECT currentDatabase() AS db")[0]["db"]
    found = store.query_sync("SELECT as_select FROM system.tables WHERE database = {d:String} AND name = {v:String}",
                             {"d": database, "v": MCP_STATS_VIEW})
    if not found:
        raise RuntimeError(f"the materialized view {MCP_STATS_VIEW} is missing: run `spanstream migrate`")
    source = re.compile(rf"\bFROM\s+(?:`?{re.escape(database)}`?\.)?`?spans`?(?=\s|$)")
    select, sources = source.subn(f"FROM `{database}`.`spans{SUFFIX}`", found[0]["as_select"])
    if sources != 1:
        raise RuntimeError(f"cannot tell which table {MCP_STATS_VIEW} reads: {found[0]['as_select']}")
    columns = ", ".join(f"`{row['name']}`" for row in store.query_sync(
        "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        {"d": database, "t": MCP_STATS}))
    fresh_tables(store, (MCP_STATS,))
    # By name, as the view maps its SELECT onto its target.
    store.command_sync(f"INSERT INTO {MCP_STATS}{SUFFIX} ({columns}) SELECT {columns} FROM ({select})")


def swap_in(store: ClickHouseStore, tables: Sequence[str]) -> None:
    """Swaps each `<table>__replay` with its live table and drops the old one. Each swap is
    atomic: readers see the old or the new table, never a half-built one. The view follows
    `spans` by name, so after the swap it feeds from the rebuilt table."""
    for table in tables:
        store.command_sync(f"EXCHANGE TABLES {table} AND {table}{SUFFIX}")
        store.command_sync(f"DROP TABLE {table}{SUFFIX}")
