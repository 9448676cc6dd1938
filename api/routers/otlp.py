"""OTLP/HTTP trace ingestion (protobuf or JSON, gzip accepted), answered as OTLP specifies."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from api.body import read_body
from api.deps import AppSettings, WriterCaller, Limiter, Publisher
from api.routers.ingest import INGEST_ERRORS, admit_and_publish
from schemas.otlp import OtlpDecodeError, spans_from_otlp_json, spans_from_otlp_protobuf
from spanstream.metrics import SPANS_INGESTED, SPANS_REJECTED

router = APIRouter(tags=["ingestion"])
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _encoding(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if content_type == JSON:
        return JSON
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {PROTOBUF} or {JSON}, not {content_type!r}"
    )


async def export_traces(
    request: Request, caller: WriterCaller, settings: AppSettings, limiter: Limiter, publisher: Publisher
) -> Response:
    """An OTLP ExportTraceServiceRequest. Spans that cannot become Span v1 are reported in
    `partial_success`; the others are accepted once Kafka has acknowledged them."""
    encoding = _encoding(request)
    body = await read_body(request, settings.ingest_max_body_bytes)
    decode = spans_from_otlp_protobuf if encoding == PROTOBUF else spans_from_otlp_json
    try:
        batch = decode(body, str(caller.project.id))
    except OtlpDecodeError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"not an OTLP trace export request: {error}") from error
    await admit_and_publish(caller, limiter, publisher, len(batch.spans) + len(batch.rejected), batch.spans)
    SPANS_INGESTED.labels("otlp").inc(len(batch.spans))
    SPANS_REJECTED.labels("otlp").inc(len(batch.rejected))
    answer = ExportTraceServiceResponse()
    if batch.rejected:
        reasons = "; ".join(f"span {span_id or '?'}: {reason}" for span_id, reason in batch.rejected[:20])
        answer.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=len(batch.rejected), error_message=reasons)
        )
    if encoding == PROTOBUF:
        return Response(answer.SerializeToString(), media_type=PROTOBUF)
    return Response(json_format.MessageToJson(answer, indent=None), media_type=JSON)


_DOC = {"responses": {**INGEST_ERRORS, 415: {"description": "Not protobuf or JSON"}}, "response_class": Response}
router.add_api_route("/v1/traces", export_traces, methods=["POST"], summary="OTLP/HTTP trace export", **_DOC)
router.add_api_route("/api/traces/otlp", export_traces, methods=["POST"], summary="OTLP/HTTP trace export (LangSight path)", **_DOC)
