"""Errors the metadata repositories raise, each answered as a 4xx with its message.

Repositories raise these instead of HTTPException so that they stay usable from the CLI; one
handler (installed by create_app) turns them into responses shaped like FastAPI's own errors.
"""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class MetadataError(Exception):
    status_code = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(MetadataError):
    status_code = 400


class Unauthorized(MetadataError):
    status_code = 401


class Forbidden(MetadataError):
    status_code = 403


class NotFound(MetadataError):
    status_code = 404


class Conflict(MetadataError):
    status_code = 409


class Gone(MetadataError):
    status_code = 410


class Locked(MetadataError):
    status_code = 423


class TooManyRequests(MetadataError):
    status_code = 429


async def _answer(request: Request, error: MetadataError) -> JSONResponse:
    return JSONResponse({"detail": error.message}, status_code=error.status_code, headers=error.headers)


async def _refused_value(request: Request, error: asyncpg.DataError) -> JSONResponse:
    # A value PostgreSQL cannot store (a NUL character in text, a number out of range) is the
    # request's fault; say which, rather than answering 500.
    return JSONResponse({"detail": f"a value in the request cannot be stored: {error}"}, status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MetadataError, _answer)
    app.add_exception_handler(asyncpg.DataError, _refused_value)
