"""422 answers that can always be written as JSON.

FastAPI's own handler echoes the offending input, and Python's JSON parser accepts `NaN` and
`Infinity`, which the response encoder then refuses: a body of `{"target": Infinity}` became a
500. This handler writes non-finite numbers as strings instead.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _finite(jsonable_encoder(error.errors()))},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install_validation_handler(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
