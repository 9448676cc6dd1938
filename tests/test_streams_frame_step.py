"""The fold of a frame message by message gives what the three passes over it gave: pure, on plain values."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.generate import generate_session
from schemas.span import decode_message, encode_spans, session_messages
from spanstream.insert_bodies import encode_span_rows
from streams.frame_step import fold_frame
from streams.health import Budget, HealthRules
from streams.pricing import ModelPrice, PriceBook
from streams.session_step import fold_batch
from streams.sessions import dump_state, load_state, session_record

PROJECT = "6f1f0c9e-4a8e-4a53-9d7e-2b1f0e6c9a11"
BOOK = PriceBook([ModelPrice(provider="test", model_id="gpt-4o", display_name="gpt-4o",
                             input_usd_per_mtok=Decimal("2.5"), output_usd_per_mtok=Decimal("10"),
                             cache_read_usd_per_mtok=Decimal("1.25"), cache_creation_usd_per_mtok=Decimal("2.5"),
                             thinking_usd_per_mtok=Decimal("10"), effective_from=datetime(2025, 1, 1, tzinfo=UTC))],
                 Decimal("0.01"))
RULES = HealthRules(project_budgets={PROJECT: Budget(tokens=400_000)})
BAD = (b"{not json", b'[{"project_id": "p", "span_id": "x", "started_at": "2026-01-01T00:00:00Z"}, {"span_id": 5}]',
       b'{"project_id": "p", "span_id": "y", "started_at": "yesterday"}')


def _three_passes(values, load, rows_body_bytes):
    """streams/agents.py fold_sessions as it was: decode every message, then encode every
    span's row, then fold every message."""
    decoded, unreadable = [], []
    for index, value in enumerate(values):
        spans, bad = decode_message(value)
        unreadable.extend((index, item) for item in bad)
        decoded.append(spans)
    rows = encode_span_rows([span for spans in decoded for span in spans], rows_body_bytes)
    return rows, fold_batch(decoded, load, BOOK, RULES), unreadable


def _published(batch):
    """What the agent writes and publishes from a batch, as bytes."""
    return ([(key, orjson.dumps(dump_state(state)), orjson.dumps(session_record(state, state.health_tag)))
             for key, state in batch.states.items() if key in batch.changed],
            [(key, orjson.dumps(change)) for key, change in batch.health_changes])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 12), st.sampled_from([None, 1, 7, 50]), st.integers(1, 40),
       st.sampled_from([300, 20_000, 1 << 20]), st.integers(0, 3))
def test_a_frame_folded_message_by_message_gives_the_same_rows_records_and_changes(
        seed, sessions, spans_per_message, per_frame, rows_body_bytes, redelivered):
    rng = random.Random(seed)
    values = []
    for index in range(sessions):
        spans = generate_session(seed, index, rng.randint(1, 40), PROJECT, datetime(2026, 11, 1, tzinfo=UTC))
        if spans_per_message is None:
            values += [value for _, value in session_messages(spans)]
        else:
            values += [encode_spans(spans[at:at + spans_per_message]) for at in range(0, len(spans), spans_per_message)]
    values += rng.sample(values, min(redelivered, len(values)))  # a redelivery: the same messages again
    rng.shuffle(values)
    for bad in BAD:
        values.insert(rng.randint(0, len(values)), bad)
    # Frame after frame, each path with its own sessions table, as the changelog would hold it.
    tables: tuple[dict, dict] = ({}, {})

    def loader(table):
        return lambda key: load_state(orjson.loads(table[key])) if key in table else None

    for at in range(0, len(values), per_frame):
        frame = values[at:at + per_frame]
        rows, batch, unreadable = _three_passes(frame, loader(tables[0]), rows_body_bytes)
        folded = fold_frame(frame, loader(tables[1]), BOOK, RULES, rows_body_bytes)
        assert folded.span_rows == rows
        assert folded.unreadable == unreadable
        assert folded.spans == sum(len(decode_message(value)[0]) for value in frame)
        assert _published(folded.batch) == _published(batch)
        assert [orjson.dumps(session_record(s, s.health_tag)) for s in folded.batch.states.values()] == [
            orjson.dumps(session_record(s, s.health_tag)) for s in batch.states.values()]
        for table, result in zip(tables, (batch, folded.batch)):
            table.update((key, orjson.dumps(dump_state(result.states[key]))) for key in result.changed)
    assert tables[0] == tables[1]
