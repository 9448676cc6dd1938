"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import Pool, Publisher

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/liveness")
async def liveness() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readiness")
async def readiness(request: Request, pool: Pool, publisher: Publisher) -> JSONResponse:
    """200 only while Kafka, PostgreSQL and (where this process has one) ClickHouse answer."""
    checks: dict[str, str] = {}
    try:
        await publisher.check_broker()
        checks["kafka"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["kafka"] = f"error: {error}"
    try:
        await pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["postgres"] = f"error: {error}"
    store = request.app.state.store
    if store is not None:  # an ingestion-only process has no analytics store to check
        try:
            await store.query("SELECT 1")
            checks["clickhouse"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["clickhouse"] = f"error: {error}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
