"""What ingestion answers: a result per span, accepted or rejected with the reason."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.span import Span, validation_reason

_SPAN_LIST = TypeAdapter(list[Span])


class SpanResult(BaseModel):
    index: int
    span_id: str | None = None
    status: Literal["accepted", "rejected"]
    reason: str | None = None


class IngestResult(BaseModel):
    """The 207 body of `POST /api/traces/spans`."""

    accepted: int
    rejected: int
    results: list[SpanResult]


def validate_spans(body: bytes, project_id: str) -> tuple[list[Span], list[dict[str, Any]]]:
    """Validates a LangSight-style JSON body (an array of span objects, or `{"spans": [...]}`)
    for `project_id`: the API key decides the project, whatever the spans say. Returns the
    accepted spans and one result per item, as plain dicts: this is the ingestion hot path.
    Raises ValueError when the body is not JSON or not a list of spans."""
    context = {"project_id": project_id}
    try:
        # Fast path: the whole body parsed and validated in one pass inside pydantic-core.
        spans = _SPAN_LIST.validate_json(body, context=context)
    except ValidationError:
        return _validate_items(_items(body), context)
    return spans, [_accepted(index, span) for index, span in enumerate(spans)]


def _items(body: bytes) -> list[Any]:
    try:
        items = json.loads(body)
    except ValueError as error:
        raise ValueError(f"the body is not valid JSON: {error}") from None
    if isinstance(items, dict) and isinstance(items.get("spans"), list):
        items = items["spans"]
    if not isinstance(items, list):
        raise ValueError("the body must be a JSON array of span objects")
    return items


def _accepted(index: int, span: Span) -> dict[str, Any]:
    result = {"index": index, "span_id": span.span_id, "status": "accepted"}
    if span.truncated_fields:
        result["reason"] = "truncated to their caps: " + ", ".join(span.truncated_fields)
    return result


def _validate_items(items: list[Any], context: dict[str, str]) -> tuple[list[Span], list[dict[str, Any]]]:
    accepted: list[Span] = []
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            results.append({"index": index, "span_id": None, "status": "rejected", "reason": "not a JSON object"})
            continue
        try:
            span = Span.model_validate(item, context=context)
        except ValidationError as error:
            span_id = item.get("span_id")
            results.append({"index": index, "span_id": span_id if isinstance(span_id, str) else None,
                            "status": "rejected", "reason": validation_reason(error)})
            continue
        accepted.append(span)
        results.append(_accepted(index, span))
    return accepted, results
