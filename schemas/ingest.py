"""What ingestion answers: a result per span, accepted or rejected with the reason."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from schemas.span import Span, validation_reason


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


def validate_spans(items: Any, project_id: str) -> tuple[list[Span], list[dict[str, Any]]]:
    """Validates a LangSight-style list of span objects for `project_id` (the API key decides
    the project; a `project_id` in the span is overridden). Returns the accepted spans and one
    result per item, as plain dicts: this is the ingestion hot path."""
    if not isinstance(items, list):
        raise ValueError("the body must be a JSON array of span objects")
    accepted: list[Span] = []
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        span_id = item.get("span_id") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            results.append({"index": index, "span_id": None, "status": "rejected", "reason": "not a JSON object"})
            continue
        try:
            span = Span.model_validate({**item, "project_id": project_id})
        except ValidationError as error:
            results.append({"index": index, "span_id": span_id if isinstance(span_id, str) else None,
                            "status": "rejected", "reason": validation_reason(error)})
            continue
        accepted.append(span)
        result = {"index": index, "span_id": span.span_id, "status": "accepted"}
        if span.truncated_fields:
            result["reason"] = "truncated to their caps: " + ", ".join(span.truncated_fields)
        results.append(result)
    return accepted, results
