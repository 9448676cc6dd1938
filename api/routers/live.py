"""GET /api/live/events: the project's spans, session changes, health tags, health checks and
alerts as Server-Sent Events, resumable with Last-Event-ID (docs/live-feed.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import asdict
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.sse import EventSourceResponse

from api.live.auth import LiveCaller
from api.live.events import EVENT_TYPES, LiveEvent, LiveFilter, sse_frame
from api.live.feed import LiveClient, LiveFeed
from api.live.positions import ALL_CODES, Codes, Position, decode_position
from api.live.resume import missed_events
from api.live.response import LiveStreamResponse

router = APIRouter(prefix="/api/live", tags=["live"])

# A client turned away waits this long before its EventSource tries again.
_REJECTED_RETRY_MS = 30_000


def _error_event(detail: str, retry_ms: int | None = None) -> bytes:
    retry = b"retry: %d\n" % retry_ms if retry_ms is not None else b""
    return b"event: error\n" + retry + b"data: " + orjson.dumps({"detail": detail}) + b"\n\n"


def _kinds(types: list[str] | None) -> frozenset[str]:
    kinds = frozenset(name.strip() for value in types or [] for name in value.split(",") if name.strip())
    unknown = kinds - set(EVENT_TYPES)
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"unknown event types {sorted(unknown)}; the live feed has {list(EVENT_TYPES)}")
    return kinds


def _resume(text: str | None) -> Position | None:
    if not text:
        return None
    try:
        return decode_position(text)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Last-Event-ID: {error}") from error


@router.get(
    "/events",
    summary="The project's events as they happen (Server-Sent Events)",
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "events span:new, session:updated, health:tag, health:check, alert"}},
)
async def live_events(
    request: Request,
    caller: LiveCaller,
    types: Annotated[list[str] | None, Query(
        description="event types to send, comma-separated or repeated; all when absent")] = None,
    agent: Annotated[str | None, Query(max_length=256, description="only events that name this agent")] = None,
    session_id: Annotated[str | None, Query(max_length=256, description="only events of this session")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    resume_from: Annotated[str | None, Query(
        alias="last_event_id", description="as the Last-Event-ID header, for a page that reloads")] = None,
) -> Response:
    feed: LiveFeed = request.app.state.live
    live_filter = LiveFilter(str(caller.project.id), _kinds(types), agent or None, session_id or None)
    resume = _resume(last_event_id or resume_from)
    client = feed.admit(live_filter)
    if client is None:
        limit = request.app.state.settings.live_max_clients
        body = _error_event(f"this API process serves its maximum of {limit} live clients; "
                            "retry later or use another instance", _REJECTED_RETRY_MS)
        return EventSourceResponse(iter([body]), headers={"Cache-Control": "no-cache"})
    keepalive = request.app.state.settings.live_keepalive_seconds
    # FastAPI's own SSE encoding (yielding ServerSentEvent) builds a model and makes one write
    # per event per client; with a thousand clients at a thousand events a second that is a
    # million of each. Each frame is encoded once by the feed and a client's batch is one write.
    return LiveStreamResponse(_stream(feed, client, resume, keepalive), client,
                              headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(feed: LiveFeed, client: LiveClient, resume: Position | None, keepalive: float) -> AsyncIterator[bytes]:
    try:
        try:
            start = await feed.join(client)
        except TimeoutError:
            yield _error_event("the live feed is not reading Kafka right now; retry later", 5000)
            return
        floor = None
        if resume is None:
            # The browser keeps this id, so a reconnect before any event still resumes exactly.
            yield b": connected\nid: %s\n\n" % start.encode(client.codes).encode()
        else:
            # The response starts with its first bytes (api/live/response.py): at once, even when
            # nothing was missed; the client keeps the id it resumed from.
            yield b": connected\n\n"
            async with aclosing(missed_events(feed, client.filter, resume, start, keepalive)) as missed:
                async for chunk in missed:
                    yield chunk
            floor = None if start.covers(resume) else resume
        while not feed.ending and not client.gone:
            if floor is None:
                client.write_directly()
            chunks = await client.take()
            if feed.ending or client.gone:
                return
            if not chunks:
                if feed.mid_batch:
                    yield b": keepalive\n\n"
                    continue
                position = feed.position if floor is None else feed.position.merged(floor)
                position_id = feed.position_id if client.codes is ALL_CODES and floor is None else position.encode(client.codes)
                yield b": keepalive\nid: %s\n\n" % position_id.encode()
            elif floor is None:
                yield chunks[0].data if len(chunks) == 1 else b"".join(chunk.data for chunk in chunks)
            else:
                frames = _behind_floor([event for chunk in chunks for event in chunk.events], floor, client.codes)
                if frames:
                    yield frames
                # The buffer was just emptied: whatever comes next was read past this point.
                if feed.position.covers(floor):
                    floor = None
    finally:
        feed.leave(client)


def _behind_floor(events: list[LiveEvent], floor: Position, codes: Codes = ALL_CODES) -> bytes:
    """Frames for a client that resumed from a process further along than this one: what it
    saw already is skipped, and ids keep its own further marks."""
    frames = []
    for event in events:
        if event.mark <= floor.mark((event.code, event.partition)):
            continue
        event_id = decode_position(event.id).merged(floor).encode(codes)
        frames.append(sse_frame(event.kind, event_id, event.data))
    return b"".join(frames)


@router.get("/stats", summary="This API process's live feed counters: clients, events sent and dropped")
async def live_stats(request: Request, caller: LiveCaller) -> dict[str, int]:
    return asdict(request.app.state.live.stats)
