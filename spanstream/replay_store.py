"""What replay does to ClickHouse: fresh `__replay` tables, ready-made inserts, the swaps.

Only the replay parent calls these: it is the one process that has the store open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from spanstream.clickhouse import ClickHouseStore
from spanstream.replay_rows import FORMAT, SETTINGS

log = logging.getLogger(__name__)

SUFFIX = "__replay"
INSERT_ATTEMPTS = 5


def fresh_tables(store: ClickHouseStore, tables: Sequence[str]) -> None:
    for table in tables:
        store.command_sync(f"DROP TABLE IF EXISTS {table}{SUFFIX}")
        store.command_sync(f"CREATE TABLE {table}{SUFFIX} AS {table}")


def raw_insert(store: ClickHouseStore, table: str, columns: Sequence[str], body: bytes) -> None:
    """Inserts a JSONCompactColumns body as it is. It belongs in ClickHouseStore beside
    insert_sync; until it moves there it takes the store's lock and client the same way.
    Transient failures are retried with back-off; a body ClickHouse keeps refusing fails the
    replay, which leaves the live tables as they were."""
    delay = 0.1
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            with store._lock:
                store._require().raw_insert(table, list(columns), body, settings=SETTINGS, fmt=FORMAT)
            return
        except Exception as error:  # noqa: BLE001 - any driver failure is retried a few times
            if attempt == INSERT_ATTEMPTS:
                raise
            log.warning("insert of %d bytes into %s failed (%s); retrying in %.1fs", len(body), table, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def swap_in(store: ClickHouseStore, tables: Sequence[str]) -> None:
    """Swaps each `<table>__replay` with its live table and drops the old one. Each swap is
    atomic: readers see the old or the new table, never a half-built one."""
    for table in tables:
        store.command_sync(f"EXCHANGE TABLES {table} AND {table}{SUFFIX}")
        store.command_sync(f"DROP TABLE {table}{SUFFIX}")
