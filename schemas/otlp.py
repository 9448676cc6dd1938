"""OTLP/HTTP trace export requests, protobuf or JSON, as Span v1 records."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from schemas.otlp_mapping import OtlpSpan, span_from_otlp
from schemas.span import Span, validation_reason

__all__ = ["OtlpBatch", "OtlpDecodeError", "spans_from_otlp_json", "spans_from_otlp_protobuf"]


class OtlpDecodeError(ValueError):
    """The body is not a valid ExportTraceServiceRequest; the whole request is refused (HTTP 400)."""


@dataclass
class OtlpBatch:
    """What one export request became. A span that cannot become a Span v1 is reported in
    `rejected` as (span id hex or "", reason) and does not take its siblings down with it."""

    spans: list[Span] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, otlp: OtlpSpan, project_id: str, inherited: dict[str, Any]) -> None:
        # Both encodings end here, so that they cannot map the same span differently.
        try:
            self.spans.append(span_from_otlp(otlp, project_id, inherited))
        except (ValueError, TypeError, OverflowError) as error:
            self.rejected.append((otlp.span_id, validation_reason(error)))

    def join_traces_to_sessions(self) -> OtlpBatch:
        """Most instrumentations set the session id (session.id, gen_ai.conversation.id) on the
        root or agent span only; a span without one would otherwise be a session of its own,
        named by its trace id. Within one export request, such a span joins the session another
        span of its trace names (the first one, if several do). A trace split across requests
        keeps its unnamed spans apart: the topic is keyed by session, so joining them later
        would take state across partitions."""
        named: dict[str, str] = {}
        for span in self.spans:
            if span.trace_id and span.session_id != span.trace_id:
                named.setdefault(span.trace_id, span.session_id)
        if named:
            for span in self.spans:
                session = named.get(span.trace_id)
                if session is not None and span.session_id == span.trace_id:
                    span.__dict__["session_id"] = session  # as Span._derive does: no re-validation
        return self


def _inherited(resource: dict[str, Any], scope_name: str, scope_version: str) -> dict[str, Any]:
    inherited = {f"resource.{key}": value for key, value in resource.items()}
    if scope_name:
        inherited["otel.scope.name"] = scope_name
    if scope_version:
        inherited["otel.scope.version"] = scope_version
    return inherited


# --- protobuf ---------------------------------------------------------------------------

_PB_SCALARS = frozenset(("string_value", "bool_value", "int_value", "double_value"))


def spans_from_otlp_protobuf(body: bytes, project_id: str) -> OtlpBatch:
    """Maps an `application/x-protobuf` ExportTraceServiceRequest (already un-gzipped)."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError) as error:
        raise OtlpDecodeError(f"not a protobuf ExportTraceServiceRequest: {error}") from error
    batch = OtlpBatch()
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            inherited = _inherited(resource, scope.name, scope.version)
            for span in scope_spans.spans:
                otlp = OtlpSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    kind=span.kind,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    status_code=span.status.code,
                    status_message=span.status.message,
                    attributes=_pb_attributes(span.attributes),
                    exceptions=[_pb_attributes(event.attributes) for event in span.events if event.name == "exception"],
                )
                batch.add(otlp, project_id, inherited)
    return batch.join_traces_to_sessions()


def _pb_attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in key_values}


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind in _PB_SCALARS:
        return getattr(value, kind)
    if kind == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    # Unset, or a string-table index, which only profiles define a table for.
    return None


# --- JSON -------------------------------------------------------------------------------

_SPAN_KIND_NAMES = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
                    "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}  # fmt: skip
_STATUS_CODE_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_FLOAT_WORDS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def spans_from_otlp_json(body: bytes, project_id: str) -> OtlpBatch:
    """Maps an `application/json` ExportTraceServiceRequest in the OTLP JSON encoding:
    lowerCamelCase keys, ids as hex, 64-bit integers as numbers or strings, enums as ints."""
    try:
        request = json.loads(body)
    except ValueError as error:
        raise OtlpDecodeError(f"not JSON: {error}") from error
    batch = OtlpBatch()
    for resource_spans in _objects(_object(request, "request"), "resourceSpans"):
        resource = _json_attributes(_field(resource_spans, "resource", dict, {}))
        for scope_spans in _objects(resource_spans, "scopeSpans"):
            scope = _field(scope_spans, "scope", dict, {})
            inherited = _inherited(resource, _field(scope, "name", str, ""), _field(scope, "version", str, ""))
            for span in _objects(scope_spans, "spans"):
                status = _field(span, "status", dict, {})
                otlp = OtlpSpan(
                    trace_id=_hex_id(span, "traceId"),
                    span_id=_hex_id(span, "spanId"),
                    parent_span_id=_hex_id(span, "parentSpanId"),
                    name=_field(span, "name", str, ""),
                    kind=_enum(span, "kind", _SPAN_KIND_NAMES),
                    start_ns=_uint64(span, "startTimeUnixNano"),
                    end_ns=_uint64(span, "endTimeUnixNano"),
                    status_code=_enum(status, "code", _STATUS_CODE_NAMES),
                    status_message=_field(status, "message", str, ""),
                    attributes=_json_attributes(span),
                    exceptions=[
                        _json_attributes(event)
                        for event in _objects(span, "events")
                        if event.get("name") == "exception"
                    ],
                )
                batch.add(otlp, project_id, inherited)
    return batch.join_traces_to_sessions()


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OtlpDecodeError(f"{where} must be a JSON object")
    return value


def _field(message: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = message.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise OtlpDecodeError(f"{key} must be a JSON {kind.__name__}, not {value!r:.60}")
    return value


def _objects(message: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [_object(item, key) for item in _field(message, key, list, [])]


def _integer(value: Any, key: str) -> int:
    # proto3 JSON writes 64-bit integers as strings; some encoders write numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise OtlpDecodeError(f"{key} must be an integer, not {value!r:.60}")


def _uint64(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    return 0 if value is None else _integer(value, key)


def _enum(message: dict[str, Any], key: str, names: dict[str, int]) -> int:
    value = message.get(key)
    if value is None:
        return 0
    if isinstance(value, str) and value in names:
        return names[value]
    return _integer(value, key)


def _hex_id(message: dict[str, Any], key: str) -> str:
    value = _field(message, key, str, "")
    try:
        return bytes.fromhex(value).hex()
    except ValueError as error:
        raise OtlpDecodeError(f"{key} must be hex, not {value!r:.60}") from error


def _json_attributes(message: dict[str, Any], key: str = "attributes") -> dict[str, Any]:
    return {_field(kv, "key", str, ""): _json_value(_field(kv, "value", dict, {})) for kv in _objects(message, key)}


def _json_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return _field(value, "stringValue", str, "")
    if "intValue" in value:
        return _integer(value["intValue"], "intValue")
    if "doubleValue" in value:
        number = value["doubleValue"]
        if isinstance(number, str) and number in _FLOAT_WORDS:
            return _FLOAT_WORDS[number]
        if isinstance(number, int | float) and not isinstance(number, bool):
            return float(number)
        raise OtlpDecodeError(f"doubleValue must be a number, not {number!r:.60}")
    if "boolValue" in value:
        return _field(value, "boolValue", bool, False)
    if "arrayValue" in value:
        array = _field(value, "arrayValue", dict, {})
        return [_json_value(_object(item, "values")) for item in _field(array, "values", list, [])]
    if "kvlistValue" in value:
        return _json_attributes(_field(value, "kvlistValue", dict, {}), "values")
    if "bytesValue" in value:
        encoded = _field(value, "bytesValue", str, "")
        try:
            # Re-encoded so that both encodings of the same bytes give the same text.
            return base64.b64encode(base64.b64decode(encoded, validate=True)).decode()
        except binascii.Error as error:
            raise OtlpDecodeError(f"bytesValue must be base64, not {encoded!r:.60}") from error
    return None
