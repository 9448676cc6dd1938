"""`POST /api/sql`: one read-only, capped ClickHouse query over the caller's project, for analysts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from api.analyst_sql import QueryRefused
from api.deps import AdminCaller, AppSettings, Store
from api.models import errors
from api.repositories.analyst_sql import QueryFailed, run_analyst_query

router = APIRouter(prefix="/api/sql", tags=["analytics"])


class SqlQuery(BaseModel):
    sql: Annotated[str, Field(min_length=1, max_length=100_000, examples=[
        "SELECT health_tag, count() AS sessions FROM sessions FINAL GROUP BY health_tag"])]


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlResult(BaseModel):
    columns: list[SqlColumn]
    # One list per row, values in column order, as JSON: times ISO 8601, decimals as strings.
    rows: list[list[Any]]
    row_count: int


@router.post(
    "", response_model=SqlResult, summary="Run one read-only ClickHouse query over this project's data (admin)",
    responses=errors({400: "not one SELECT, or ClickHouse's error (syntax, time or memory cap)",
                      403: "not an admin, or the query reads something outside the project's tables",
                      503: "this process has no analytics store (ingestion only)"}),
)
async def run_sql(body: SqlQuery, caller: AdminCaller, store: Store, settings: AppSettings) -> SqlResult:
    """Runs with `readonly = 1`, the caps `SPANSTREAM_SQL_MAX_EXECUTION_SECONDS`,
    `SPANSTREAM_SQL_MAX_MEMORY_BYTES` and `SPANSTREAM_SQL_MAX_RESULT_ROWS` (more rows is an error,
    not a truncated answer), and every table filtered to the caller's project. Queryable tables
    and example queries: docs/analytics.md."""
    try:
        result = await run_analyst_query(store, settings, str(caller.project.id), body.sql)
    except QueryRefused as error:
        code = status.HTTP_403_FORBIDDEN if error.forbidden else status.HTTP_400_BAD_REQUEST
        raise HTTPException(code, str(error)) from error
    except QueryFailed as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"ClickHouse refused the query: {error}") from error
    return SqlResult(columns=[SqlColumn(name=n, type=t) for n, t in zip(result.columns, result.types)],
                     rows=result.rows, row_count=len(result.rows))
