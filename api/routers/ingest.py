"""Span ingestion: LangSight-compatible JSON and OTLP/HTTP, answered once Kafka has the spans."""

from __future__ import annotations

import json
import math

from fastapi import APIRouter, HTTPException, Request, Response, status

from api.body import read_body
from api.deps import AppSettings, WriterCaller, Limiter, Publisher
from api.publisher import BrokerUnavailable
from schemas.ingest import IngestResult, validate_spans
from schemas.span import Span
from spanstream.metrics import SPANS_INGESTED, SPANS_REJECTED

router = APIRouter(tags=["ingestion"])
BROKER_RETRY_AFTER_SECONDS = 5

INGEST_ERRORS = {
    400: {"description": "The body is not JSON, or not a list of spans"},
    401: {"description": "Missing, invalid or revoked API key"},
    413: {"description": "The body is over the size limit"},
    429: {"description": "Over this key's rate limit; retry after Retry-After seconds"},
    503: {"description": "Kafka did not acknowledge in time; retry after Retry-After seconds. Nothing was accepted"},
}


async def admit_and_publish(caller, limiter, publisher, offered: int, spans: list[Span]) -> None:
    """Applies the rate limit to everything offered, then waits for Kafka's ack of the accepted spans."""
    # Per key; a user posting with a login token has a bucket of their own.
    wait = limiter.admit(caller.key_prefix or caller.actor, offered)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"over the rate limit of this API key; retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    try:
        await publisher.publish(spans)
    except BrokerUnavailable as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"spans were not accepted: {error}; retry later",
            headers={"Retry-After": str(BROKER_RETRY_AFTER_SECONDS)},
        ) from error


@router.post(
    "/api/traces/spans",
    status_code=status.HTTP_207_MULTI_STATUS,
    response_model=IngestResult,
    responses=INGEST_ERRORS,
    summary="Ingest a batch of spans (LangSight-compatible JSON)",
)
async def ingest_spans(
    request: Request, caller: WriterCaller, settings: AppSettings, limiter: Limiter, publisher: Publisher
) -> Response:
    """A JSON array of spans (or `{"spans": [...]}`). Each gets a result: accepted, or rejected
    with the reason. The answer comes after Kafka has acknowledged every accepted span."""
    body = await read_body(request, settings.ingest_max_body_bytes)
    try:
        accepted, results = validate_spans(body, str(caller.project.id))
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from error
    await admit_and_publish(caller, limiter, publisher, len(results), accepted)
    SPANS_INGESTED.labels("spans").inc(len(accepted))
    SPANS_REJECTED.labels("spans").inc(len(results) - len(accepted))
    content = {"accepted": len(accepted), "rejected": len(results) - len(accepted), "results": results}
    return Response(json.dumps(content, separators=(",", ":")), status.HTTP_207_MULTI_STATUS, media_type="application/json")
