"""Error answers as OpenAPI documents them, so clients (and schema checkers) know every status."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status
from pydantic import BaseModel


class Problem(BaseModel):
    """What went wrong, in words meant for the caller."""
    detail: str


_WHY = {
    400: "malformed request (e.g. an invalid cursor)",
    401: "missing or invalid credentials",
    403: "the caller's role does not allow this",
    404: "no such thing in the caller's project",
    409: "conflicts with what is stored",
    503: "this process has no analytics store (ingestion only), or a dependency is down; retry elsewhere or later",
}


def documented(*codes: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code with the Problem body; `why` overrides a description
    (keyed `e404="..."`)."""
    return {code: {"model": Problem, "description": why.get(f"e{code}", _WHY[code])} for code in codes}


def invalid_field(location: tuple[str, ...], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, for checks that need the database."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         [{"loc": list(location), "msg": message, "type": "value_error"}])
