"""The read endpoints' access to ClickHouse: every query capped in time and memory.

A query that hits a cap is the caller asking for too much at once (a year-long window, a
huge session), not a server bug, so it becomes 504 or 503 with what to narrow, never a 500.
The `Reader` alias would sit in api/deps.py, which another change owns at the moment.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse

from api.deps import AppSettings, Store
from spanstream.clickhouse import ClickHouseStore, StoreUnavailable

# ClickHouse error codes for a query stopped by a limit of its own settings.
_TIMEOUT_CODES = {159}  # TIMEOUT_EXCEEDED
_MEMORY_CODES = {241, 158, 307, 396}  # MEMORY_LIMIT_EXCEEDED, TOO_MANY_ROWS, TOO_MANY_BYTES, TOO_MANY_ROWS_OR_BYTES
_CODE = re.compile(r"Code: (\d+)")


class QueryCapped(Exception):
    """A read stopped by its cap, or a store that cannot answer; `status_code` says which."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class CappedReader:
    """Runs read queries with the configured per-query caps."""

    def __init__(self, store: ClickHouseStore, max_seconds: float, max_memory_bytes: int) -> None:
        self._store = store
        self._caps = {"max_execution_time": max_seconds, "max_memory_usage": max_memory_bytes}

    async def rows(self, sql: str, parameters: dict[str, Any] | None = None, *,
                   point_lookup: bool = False) -> list[dict[str, Any]]:
        """The endpoints' reads are functions of their text, parameters and the tables (times
        come bound, never from the clock), so the store may answer them from its result cache.
        `point_lookup`: a read of one key's few rows, run on one thread (ClickHouse's default
        of a thread per core only adds pipeline set-up there: ~15% of its CPU, measured)."""
        settings = {**self._caps, "max_threads": 1} if point_lookup else self._caps
        try:
            return await self._store.query(sql, parameters, settings=settings, cached=True)
        except ClickHouseError as error:
            found = _CODE.search(str(error))
            code = int(found[1]) if found else None
            if code in _TIMEOUT_CODES:
                raise QueryCapped(
                    status.HTTP_504_GATEWAY_TIMEOUT,
                    f"the query took longer than {self._caps['max_execution_time']:g} s and was stopped; "
                    "narrow the time window or add filters",
                ) from error
            if code in _MEMORY_CODES:
                raise QueryCapped(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    f"the query needed more than {self._caps['max_memory_usage'] // 2**20} MiB and was stopped; "
                    "narrow the time window or add filters",
                ) from error
            raise
        except StoreUnavailable as error:
            raise QueryCapped(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from error


async def _reader(store: Store, settings: AppSettings) -> CappedReader:
    return CappedReader(store, settings.query_max_execution_seconds, settings.query_max_memory_bytes)


Reader = Annotated[CappedReader, Depends(_reader)]


async def _capped(request: Request, error: QueryCapped) -> JSONResponse:
    headers = {"Retry-After": "5"} if error.status_code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return JSONResponse({"detail": error.message}, status_code=error.status_code, headers=headers)


def answer_capped_queries(app: FastAPI) -> None:
    app.add_exception_handler(QueryCapped, _capped)
