"""Live feed event ids: how far the feed has read every partition of every topic it relays.

A client that reconnects sends one id back (`Last-Event-ID`), and the events it missed may lie
in any partition of any topic, so one id must say how far it got in all of them. Each id is
therefore the whole position vector, written compactly (docs/live-feed.md):

    1~s1a.0.7f~n2b.9.0~h3.0.0~c0.0.0~a0.0.0~+s2.1

`1` is the format version; each `~<code>` segment lists, partition by partition, the offset
(base 36) of the next message not yet delivered in that topic (codes in TOPIC_CODES); a trailing
`~+<code><partition>.<items>` says that of the message at that offset the first `items` events
were delivered (a `spans` message may hold many spans). Ids are the same on every API process
for the same position, so a client may reconnect to any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# spans, sessions, health, health.checks, alerts; one letter keeps ids short.
TOPIC_CODES = ("s", "n", "h", "c", "a")
FORMAT_VERSION = "1"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

# (offset of the next message not fully delivered, how many of its events were delivered)
Mark = tuple[int, int]
Partition = tuple[str, int]  # (topic code, partition)


def _b36(number: int) -> str:
    if number == 0:
        return "0"
    digits = []
    while number:
        number, rest = divmod(number, 36)
        digits.append(_DIGITS[rest])
    return "".join(reversed(digits))


def _parse_b36(text: str, what: str) -> int:
    if not text or len(text) > 13 or any(ch not in _DIGITS for ch in text):
        raise ValueError(f"{what} {text!r} is not a base-36 number")
    return int(text, 36)


@dataclass(frozen=True)
class Position:
    """Where a stream stands in each partition; partitions it never read are absent."""

    marks: dict[Partition, Mark]

    def mark(self, partition: Partition) -> Mark:
        return self.marks.get(partition, (0, 0))

    def merged(self, other: Position) -> Position:
        """The furthest of both in every partition: what a client has seen when it got
        everything up to `self` here and up to `other` elsewhere."""
        marks = dict(self.marks)
        for partition, mark in other.marks.items():
            if mark > marks.get(partition, (-1, 0)):
                marks[partition] = mark
        return Position(marks)

    def covers(self, other: Position) -> bool:
        """Whether this position is at or past `other` in every partition `other` names."""
        return all(self.mark(partition) >= mark for partition, mark in other.marks.items())

    def encode(self) -> str:
        return encode_marks(self.marks)


def encode_marks(marks: dict[Partition, Mark]) -> str:
    segments = [FORMAT_VERSION]
    partial = []
    for code in TOPIC_CODES:
        offsets = sorted((partition, mark) for (c, partition), mark in marks.items() if c == code)
        if not offsets:
            continue
        if [partition for partition, _ in offsets] != list(range(len(offsets))):
            raise ValueError(f"topic {code}: partitions must be 0..n-1")
        segments.append(code + ".".join(_b36(offset) for _, (offset, _items) in offsets))
        partial += [f"+{code}{_b36(partition)}.{_b36(items)}" for partition, (_, items) in offsets if items]
    return "~".join(segments + partial)


def decode_position(text: str) -> Position:
    """Reads an id this module wrote; raises ValueError saying what is wrong with it."""
    if len(text) > 4096:
        raise ValueError("the event id is longer than any the live feed writes")
    version, *segments = text.strip().split("~")
    if version != FORMAT_VERSION:
        raise ValueError(f"event id format {version!r} is not one this server writes ({FORMAT_VERSION})")
    marks: dict[Partition, Mark] = {}
    for segment in segments:
        if segment.startswith("+"):
            code, rest = segment[1:2], segment[2:]
            partition_text, _, items_text = rest.partition(".")
            partition = (code, _parse_b36(partition_text, "partition"))
            if partition not in marks:
                raise ValueError(f"event id marks partition {partition} that it does not list")
            marks[partition] = (marks[partition][0], _parse_b36(items_text, "item count"))
            continue
        code = segment[:1]
        if code not in TOPIC_CODES:
            raise ValueError(f"event id names unknown topic code {code!r}")
        for index, offset in enumerate(segment[1:].split(".")):
            marks[(code, index)] = (_parse_b36(offset, "offset"), 0)
    return Position(marks)


class PositionTracker:
    """Follows a reader through its messages and writes the id of each event it emits. The id
    string is rebuilt only when asked for, since most messages a busy feed reads emit nothing."""

    def __init__(self, start: Position) -> None:
        self._marks = dict(start.marks)
        self._id: str | None = None

    def event_id(self, code: str, partition: int, offset: int, index: int, count: int) -> str:
        """The id of event `index` of the `count` a message emits: past the message after its
        last event, else partway into it."""
        self._marks[(code, partition)] = (offset + 1, 0) if index + 1 >= count else (offset, index + 1)
        self._id = None
        return self.current_id()

    def passed(self, code: str, partition: int, offset: int) -> None:
        """The message was read to its end (whatever it emitted)."""
        mark = (offset + 1, 0)
        if self._marks.get((code, partition)) != mark:
            self._marks[(code, partition)] = mark
            self._id = None

    def current_id(self) -> str:
        if self._id is None:
            self._id = encode_marks(self._marks)
        return self._id

    def position(self) -> Position:
        return Position(dict(self._marks))
