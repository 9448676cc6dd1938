"""Live feed event ids, on plain values: what they encode, and resuming from a process further along."""

from __future__ import annotations

import pytest

from api.live.events import LiveEvent, sse_frame
from api.live.positions import ALL_CODES, Position, PositionTracker, decode_position
from api.routers.live import _behind_floor


def test_an_id_carries_every_partitions_offset_and_a_partial_message():
    position = Position({("s", 0): (36, 0), ("s", 1): (7, 2), ("n", 0): (0, 0), ("a", 0): (5, 0), ("a", 1): (1_000_000, 0)})
    text = position.encode()
    assert text == "1~s24.7~n0~a5.f4240~+s1.2"
    assert decode_position(text) == position


@pytest.mark.parametrize("text, reason", [
    ("2~s0", "format"), ("1~x0", "unknown topic"), ("1~s0.zz!", "hexadecimal"), ("1~s0~+s3.1", "does not list"),
])
def test_a_malformed_id_says_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match=reason):
        decode_position(text)


def test_the_tracker_gives_each_event_of_a_batch_message_its_own_position():
    tracker = PositionTracker(Position({("s", 0): (4, 0), ("h", 0): (9, 0)}))
    ids = [tracker.event_id("s", 0, 4, index, 3) for index in range(3)]
    assert [decode_position(i).mark(("s", 0)) for i in ids] == [(4, 1), (4, 2), (5, 0)]
    tracker.passed("h", 0, 9)
    assert decode_position(tracker.current_id()).marks == {("s", 0): (5, 0), ("h", 0): (10, 0)}


def test_an_id_for_some_topics_names_only_those():
    tracker = PositionTracker(Position({("s", 0): (4, 0), ("s", 1): (2, 0), ("n", 0): (9, 0), ("a", 0): (1, 0)}))
    tracker.event_id("s", 1, 2, 0, 2)
    spans_and_alerts = frozenset({"s", "a"})
    assert tracker.current_id(spans_and_alerts) == "1~s4.2~a1~+s1.1"
    assert tracker.current_id() == "1~s4.2~n9~a1~+s1.1"
    assert Position({("s", 0): (4, 0), ("n", 0): (9, 0)}).encode(frozenset({"n"})) == "1~n9"


def test_merging_keeps_the_furthest_mark_of_each_partition():
    ahead_here = Position({("s", 0): (5, 1), ("s", 1): (2, 0)})
    ahead_there = Position({("s", 0): (5, 0), ("s", 1): (3, 0)})
    assert ahead_here.merged(ahead_there) == Position({("s", 0): (5, 1), ("s", 1): (3, 0)})
    assert ahead_here.merged(ahead_there).covers(ahead_here) and not ahead_there.covers(ahead_here)


def _event(offset: int, index: int, count: int, feed_marks: dict) -> LiveEvent:
    event_id = Position(feed_marks).encode()
    data = b'{"n":%d}' % (offset * 10 + index)
    return LiveEvent("span:new", "p", "s", (), event_id, "s", 0, offset, index, count, data,
                     {ALL_CODES: sse_frame("span:new", event_id, data)})


def test_a_client_ahead_of_this_process_gets_nothing_twice_and_keeps_its_marks():
    # The client saw `spans` 0 up to the second event of the message at offset 5, and `spans` 1
    # up to offset 9; this process's feed is behind it in partition 0 and ahead in partition 1.
    floor = Position({("s", 0): (5, 2), ("s", 1): (9, 0)})
    events = [
        _event(4, 0, 1, {("s", 0): (5, 0), ("s", 1): (12, 0)}),
        _event(5, 0, 3, {("s", 0): (5, 1), ("s", 1): (12, 0)}),
        _event(5, 1, 3, {("s", 0): (5, 2), ("s", 1): (12, 0)}),
        _event(5, 2, 3, {("s", 0): (6, 0), ("s", 1): (12, 0)}),
    ]
    frames = _behind_floor(events, floor).split(b"\n\n")[:-1]
    assert len(frames) == 1 and b'data: {"n":52}' in frames[0]
    sent_id = frames[0].split(b"id: ")[1].split(b"\n")[0].decode()
    assert decode_position(sent_id).marks == {("s", 0): (6, 0), ("s", 1): (12, 0)}
