"""The batcher's frames and the batch fold: pure, on plain values."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtests.generate import generate_sessions
from streams.health import HealthRules
from streams.pricing import PriceBook
from streams.session_step import apply_spans, by_session, fold_batch
from streams.sessions import SessionState, session_record
from streams.span_batches import BadBatch, SourceMessage, pack, unpack

RULES = HealthRules()
BOOK = PriceBook([], 0)


@given(st.lists(st.tuples(st.integers(0, 2**62), st.binary(max_size=40) | st.none(), st.binary(max_size=300))))
def test_a_frame_gives_back_every_message_with_its_offset_and_key(messages):
    assert unpack(pack(messages)) == [SourceMessage(offset, key or b"", value) for offset, key, value in messages]


@pytest.mark.parametrize("frame", [b"", b"XXXX", pack([(7, b"k", b"value")])[:-2], pack([(7, b"k", b"v")])[:10]])
def test_a_frame_the_batcher_did_not_write_is_refused(frame):
    with pytest.raises(BadBatch):
        unpack(frame)


def _one_at_a_time(messages):
    """What a fold of one message per event gives: the reference for the batch fold."""
    states, changes = {}, []
    for spans in messages:
        for key, group in by_session(spans).items():
            state = states.get(key) or states.setdefault(key, SessionState(group[0].project_id, group[0].session_id))
            step = apply_spans(state, group, BOOK, RULES)
            if step.changed and step.health_change and step.health_change["version"] == state.version:
                changes.append((key, step.health_change))
    return states, changes


def test_folding_a_batch_equals_folding_its_messages_one_by_one():
    sessions = generate_sessions(5, 12, 9, "p", datetime(2026, 3, 1, tzinfo=UTC))
    spans = [span for session in sessions for span in session]
    random.Random(1).shuffle(spans)
    messages = [[span] for span in spans] + [[span] for span in spans[:20]]  # duplicates too
    expected_states, expected_changes = _one_at_a_time(messages)
    stored: dict[bytes, SessionState] = {}
    changes = []
    for start in range(0, len(messages), 17):  # batches of 17 messages, state kept in between
        batch = fold_batch(messages[start:start + 17], stored.get, BOOK, RULES)
        stored.update(batch.states)
        changes += batch.health_changes
    # A duplicate span repeats the latest change (for a redelivery after a crash); readers keep
    # one per version, so compare the distinct changes, in order.
    changes = list({(k, c["version"]): (k, c) for k, c in changes}.values())
    assert {key: session_record(state, state.health_tag) for key, state in stored.items()} == {
        key: session_record(state, state.health_tag) for key, state in expected_states.items()}
    assert [(k, c["version"], c["health_tag"]) for k, c in changes] == [
        (k, c["version"], c["health_tag"]) for k, c in expected_changes]


def test_a_redelivered_batch_changes_nothing_and_repeats_the_latest_tag():
    session = generate_sessions(2, 1, 8, "p", datetime(2026, 3, 1, tzinfo=UTC))[0]
    messages = [session]  # one message: the whole session
    stored: dict[bytes, SessionState] = {}
    first = fold_batch(messages, stored.get, BOOK, RULES)
    assert first.changed and first.health_changes  # a new session gets its first tag
    stored.update(first.states)
    again = fold_batch(messages, stored.get, BOOK, RULES)
    assert again.changed == set()
    assert [change for _, change in again.health_changes] == [change for _, change in first.health_changes][-1:]
