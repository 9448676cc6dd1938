"""Live feed events: what each topic's messages become, which clients want them, and their SSE frames."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import orjson

from schemas.span import PAYLOAD_FIELDS, Span, decode_message

# The event each topic's records become, by topic code (api/live/positions.py).
EVENT_OF_TOPIC = {"s": "span:new", "n": "session:updated", "h": "health:tag", "c": "health:check", "a": "alert"}
EVENT_TYPES = tuple(EVENT_OF_TOPIC.values())
# A span:new event says a span happened, and GET /api/spans has the rest: it carries neither the
# payloads (up to 128 KiB each) nor fields left empty. Each client is sent every byte of every event,
# a thousand clients at a thousand events a second, so the bytes are the feed's main cost.
_SPAN_ALWAYS = ("project_id", "span_id", "session_id", "span_type", "status", "started_at")
_SPAN_WHEN_SET = tuple(name for name in Span.model_fields
                       if name not in _SPAN_ALWAYS and name not in PAYLOAD_FIELDS and name != "schema_version")


@dataclass(frozen=True, slots=True)
class Item:
    """One event's worth of a message, before it has an id."""

    index: int  # among the message's events; `count` of them in all
    count: int
    project_id: str
    session_id: str | None
    agents: tuple[str, ...]
    data: bytes  # JSON on one line


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str
    project_id: str
    session_id: str | None
    agents: tuple[str, ...]
    id: str
    code: str
    partition: int
    offset: int
    index: int
    count: int
    data: bytes
    frame: bytes  # the whole SSE event, the same bytes for every client

    @property
    def mark(self) -> tuple[int, int]:
        """The partition's mark once this event is delivered (api/live/positions.py)."""
        return (self.offset + 1, 0) if self.index + 1 >= self.count else (self.offset, self.index + 1)


def span_event_data(span: Span) -> bytes:
    """The data of a span's span:new event: the span without payloads and without empty fields
    (`status`, `span_type` and the ids are always there; a zero token count is left out)."""
    fields = span.__dict__
    data = {name: fields[name] for name in _SPAN_ALWAYS}
    for name in _SPAN_WHEN_SET:
        value = fields[name]
        if value or (value is not None and name == "latency_ms"):
            data[name] = value
    return orjson.dumps(data, option=orjson.OPT_UTC_Z)


def sse_frame(kind: str, event_id: str, data: bytes) -> bytes:
    return b"event: %s\nid: %s\ndata: %s\n\n" % (kind.encode(), event_id.encode(), data)


def message_items(code: str, value: bytes | None, projects: Container[str]) -> tuple[list[Item], int]:
    """The events a message holds for `projects`, and how many of its records were unreadable.

    Indexes count every event of the message, whoever it belongs to, so that they are the same
    for every reader (a partial position in an id refers to them)."""
    if value is None or not projects:
        # No client of any project: nothing to decode. Every span would otherwise be decoded a
        # second time in the process that owns the store, which bounds the whole pipeline.
        return [], 0
    if code == "s":
        # A span of a watched project spells that project's id in its message; most messages
        # belong to projects nobody is watching, and need not be decoded at all.
        if not any(project.encode() in value for project in projects):
            return [], 0
        spans, unreadable = decode_message(value)
        count = len(spans)
        items = [
            Item(index, count, span.project_id, span.session_id,
                 tuple(name for name in (span.agent_name, span.target_agent_name) if name),
                 span_event_data(span))
            for index, span in enumerate(spans) if span.project_id in projects
        ]
        return items, len(unreadable)
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [], 1
    project_id = record.get("project_id") if isinstance(record, dict) else None
    if not isinstance(project_id, str) or not project_id:
        return [], 1
    if project_id not in projects:
        return [], 0
    session_id = record.get("session_id")
    agents = record.get("agents")
    if not isinstance(agents, list):
        agents = [record.get("agent_name")]
    # Records from other producers may be pretty-printed; an SSE data line may not hold a newline.
    data = value if b"\n" not in value and b"\r" not in value else orjson.dumps(record)
    return [Item(0, 1, project_id, session_id if isinstance(session_id, str) else None,
                 tuple(name for name in agents if isinstance(name, str) and name), data)], 0


@dataclass(frozen=True)
class LiveFilter:
    """What one client asked for. Clients with equal filters share one channel (api/live/feed.py)."""

    project_id: str
    kinds: frozenset[str] = frozenset()  # empty: every kind
    agent: str | None = None
    session_id: str | None = None

    def matches(self, event: LiveEvent | Item, kind: str) -> bool:
        # An agent or session filter keeps only the events that name that agent or session.
        return (
            event.project_id == self.project_id
            and (not self.kinds or kind in self.kinds)
            and (self.agent is None or self.agent in event.agents)
            and (self.session_id is None or event.session_id == self.session_id)
        )
