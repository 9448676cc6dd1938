"""Reads a request body within the size limit, inflating it if the client compressed it."""

from __future__ import annotations

import zlib

from fastapi import HTTPException, Request, status


# gzip framing, or zlib framing (what HTTP calls deflate), each with automatic header detection.
_WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_body(request: Request, limit: int) -> bytes:
    """The decoded body; 413 past `limit` bytes (compressed or not), 415 for unknown encodings."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower().strip()
    if encoding in ("", "identity"):
        return body
    if encoding not in _WINDOW_BITS:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none"
        )
    # Bounded inflate: a small gzip bomb must not expand past the limit in memory.
    inflater = zlib.decompressobj(wbits=_WINDOW_BITS[encoding])
    try:
        decoded = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the {encoding} body is corrupt: {error}") from error
    if len(decoded) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    return decoded


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the body is over the {limit} byte limit; send fewer spans per request",
    )
