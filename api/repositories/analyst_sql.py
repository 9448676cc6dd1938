"""Runs one analyst query against ClickHouse, checked and confined to one project (api/analyst_sql.py)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from clickhouse_connect.driver.exceptions import ClickHouseError as ClickHouseClientError

from api.analyst_sql import QUERYABLE_TABLES, Catalog, QueryRefused, check_ast, project_filters, single_statement
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings


class QueryFailed(ValueError):
    """ClickHouse refused or aborted the query (syntax, unknown column, time or memory cap); the
    message is ClickHouse's."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


async def _catalog(store: ClickHouseStore, database: str) -> Catalog:
    tables = await store.query(
        "SELECT name FROM system.tables WHERE database = {database:String}", {"database": database})
    databases = await store.query("SELECT name FROM system.databases")
    return Catalog(
        database,
        frozenset(row["name"] for row in tables) - set(QUERYABLE_TABLES),
        frozenset(row["name"] for row in databases) - {database},
    )


async def run_analyst_query(store: ClickHouseStore, settings: Settings, project_id: str, sql: str) -> QueryResult:
    """Raises QueryRefused (the query is not allowed) or QueryFailed (ClickHouse's error)."""
    # In parentheses, so that the driver's trailing SETTINGS clause can only attach to the whole
    # query, and a trailing `LIMIT 0` does not send it down the driver's metadata-probe path.
    text = f"(\n{single_statement(sql)}\n)"
    try:
        # EXPLAIN AST only parses: nothing of the query runs before it has been checked.
        explained = await store.query_table(f"EXPLAIN AST {text}")
    except ClickHouseClientError as error:
        raise QueryFailed(_message(error)) from error
    check_ast([row[0] for row in explained[2]], await _catalog(store, settings.clickhouse_database))
    caps = {
        "max_execution_time": settings.sql_max_execution_seconds,
        "max_memory_usage": settings.sql_max_memory_bytes,
        "max_result_rows": settings.sql_max_result_rows,
        "result_overflow_mode": "throw",
        "additional_table_filters": project_filters(settings.clickhouse_database, project_id),
        # Last, though ClickHouse applies a SETTINGS clause as one change: after it nothing may
        # change a setting, the filters above included.
        "readonly": 1,
    }
    try:
        columns, types, rows = await store.query_table(text, settings=caps)
        if not columns:
            # chdb sends no header with an empty result; DESCRIBE names the columns without running it.
            described = await store.query_table(f"DESCRIBE {text}", settings=caps)
            columns, types = [row[0] for row in described[2]], [row[1] for row in described[2]]
    except ClickHouseClientError as error:
        raise QueryFailed(_message(error)) from error
    return QueryResult(columns, types, [[json_value(value) for value in row] for row in rows])


def _message(error: Exception) -> str:
    text = str(error).strip()
    return text or type(error).__name__


def json_value(value: Any) -> Any:
    """A ClickHouse value as JSON can carry it: times in ISO 8601 (naive ones are UTC), decimals
    as strings (exact), NaN and infinities as null, bytes as UTF-8 or else base64."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(json_value(k)): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(item) for item in value]
    return str(value)
