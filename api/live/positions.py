"""Live feed event ids: how far the feed has read every partition of every topic it relays.

A client that reconnects sends one id back (`Last-Event-ID`), and the events it missed may lie
in any partition of any topic, so one id must say how far it got in all of them. Each id is
therefore the whole position vector, written compactly (docs/live-feed.md):

    1~s1a.0.7f~n2b.9.0~h3.0.0~c0.0.0~a0.0.0~+s2.1

`1` is the format version; each `~<code>` segment lists, partition by partition, the offset
(hexadecimal) of the next message not yet delivered in that topic (codes in TOPIC_CODES); a trailing
`~+<code><partition>.<items>` says that of the message at that offset the first `items` events
were delivered (a `spans` message may hold many spans). Ids are the same on every API process
for the same position, so a client may reconnect to any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# spans, sessions, health, health.checks, alerts; one letter keeps ids short.
TOPIC_CODES = ("s", "n", "h", "c", "a")
FORMAT_VERSION = "1"
_DIGITS = "0123456789abcdef"

# A set of topic codes: the topics an id names. ALL_CODES is the one every unfiltered stream uses.
Codes = frozenset[str]
ALL_CODES: Codes = frozenset(TOPIC_CODES)

# (offset of the next message not fully delivered, how many of its events were delivered)
Mark = tuple[int, int]
Partition = tuple[str, int]  # (topic code, partition)


def _hex(number: int) -> str:
    return format(number, "x")


def _parse_hex(text: str, what: str) -> int:
    if not text or len(text) > 16 or any(ch not in _DIGITS for ch in text):
        raise ValueError(f"{what} {text!r} is not a hexadecimal number")
    return int(text, 16)


def _segment(code: str, marks: list[Mark]) -> tuple[str, list[str]]:
    """A topic's offsets, and its partial marks."""
    return (code + ".".join([format(offset, "x") for offset, _ in marks]),
            [f"+{code}{partition:x}.{items:x}" for partition, (_, items) in enumerate(marks) if items])


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

    def encode(self, codes: Codes = ALL_CODES) -> str:
        """The id of this position in the topics `codes` (a stream's ids name only the topics
        of the event types it asked for)."""
        if codes is not ALL_CODES:
            return encode_marks({partition: mark for partition, mark in self.marks.items() if partition[0] in codes})
        return encode_marks(self.marks)

    def topics(self) -> frozenset[str]:
        """The codes of the topics this position names."""
        return frozenset(code for code, _ in self.marks)


def encode_marks(marks: dict[Partition, Mark]) -> str:
    segments = [FORMAT_VERSION]
    partial = []
    for code in TOPIC_CODES:
        offsets = sorted((partition, mark) for (c, partition), mark in marks.items() if c == code)
        if not offsets:
            continue
        if [partition for partition, _ in offsets] != list(range(len(offsets))):
            raise ValueError(f"topic {code}: partitions must be 0..n-1")
        segments.append(code + ".".join(_hex(offset) for _, (offset, _items) in offsets))
        partial += [f"+{code}{_hex(partition)}.{_hex(items)}" for partition, (_, items) in offsets if items]
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
            partition = (code, _parse_hex(partition_text, "partition"))
            if partition not in marks:
                raise ValueError(f"event id marks partition {partition} that it does not list")
            marks[partition] = (marks[partition][0], _parse_hex(items_text, "item count"))
            continue
        code = segment[:1]
        if code not in TOPIC_CODES:
            raise ValueError(f"event id names unknown topic code {code!r}")
        for index, offset in enumerate(segment[1:].split(".")):
            marks[(code, index)] = (_parse_hex(offset, "offset"), 0)
    return Position(marks)


class PositionTracker:
    """Follows a reader through its messages and writes the id of each event it emits. Only
    the segment of the topic that moved is rewritten, and only when an id is asked for, since
    a busy feed writes an id per event."""

    def __init__(self, start: Position) -> None:
        self._marks: dict[str, list[Mark]] = {}
        for (code, partition), mark in sorted(start.marks.items()):
            self._mark_list(code, partition)[partition] = mark
        self._segments: dict[str, tuple[str, list[str]]] = {}
        self._dirty = set(self._marks)
        self._id: str | None = None
        self._ids: dict[Codes, str] = {}

    def _mark_list(self, code: str, partition: int) -> list[Mark]:
        marks = self._marks.setdefault(code, [])
        if partition >= len(marks):
            marks.extend([(0, 0)] * (partition + 1 - len(marks)))
        return marks

    def _set(self, code: str, partition: int, mark: Mark) -> None:
        marks = self._mark_list(code, partition)
        if marks[partition] != mark:
            marks[partition] = mark
            self._dirty.add(code)
            self._id = None

    def event_id(self, code: str, partition: int, offset: int, index: int, count: int) -> str:
        """The id of event `index` of the `count` a message emits: past the message after its
        last event, else partway into it."""
        self._set(code, partition, (offset + 1, 0) if index + 1 >= count else (offset, index + 1))
        return self.current_id()

    def passed(self, code: str, partition: int, offset: int) -> None:
        """The message was read to its end (whatever it emitted)."""
        self._set(code, partition, (offset + 1, 0))

    def current_id(self, codes: Codes = ALL_CODES) -> str:
        """The id of where the reader stands, in the topics `codes`."""
        if self._id is None:
            for code in self._dirty:
                self._segments[code] = _segment(code, self._marks[code])
            self._dirty.clear()
            self._id = self._join(ALL_CODES)
            self._ids = {ALL_CODES: self._id}
        if codes is ALL_CODES:
            return self._id
        found = self._ids.get(codes)
        if found is None:
            found = self._ids[codes] = self._join(codes)
        return found

    def _join(self, codes: Codes) -> str:
        segments = [self._segments[code] for code in TOPIC_CODES if code in self._segments and code in codes]
        return "~".join([FORMAT_VERSION, *(offsets for offsets, _ in segments),
                         *(mark for _, partial in segments for mark in partial)])

    def position(self) -> Position:
        return Position({(code, partition): mark for code, marks in self._marks.items()
                         for partition, mark in enumerate(marks)})
