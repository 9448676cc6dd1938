"""One frame of the live fold, message by message: decode, spans-table rows, fold.

The fold agent (streams/agents.py) did this in three passes over a frame: decode every
message, then encode every span's row, then fold every message. A frame is ~1,500 spans, a few
MiB of objects, more than the CPU's caches hold, so the second and third passes read every span
back from memory; on the 2-core VM that was a third of the fold's CPU (loadtests/bench_fold.py).
Here each message's rows are encoded and its spans folded while they are fresh, with the same
functions, so the rows, states, table writes and health changes are the ones the three passes
give, byte for byte (tests/test_streams_frame_step.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from schemas.span import Unreadable, decode_message
from spanstream.insert_bodies import SpanRowBodies
from streams.health import HealthRules
from streams.pricing import PriceBook
from streams.session_step import BatchFold, BatchFolder
from streams.sessions import SessionState


@dataclass
class FoldedFrame:
    span_rows: list[bytes]  # the spans-table rows, JSONCompactEachRow bodies (insert_bodies.encode_span_rows)
    batch: BatchFold  # as session_step.fold_batch gives it
    unreadable: list[tuple[int, Unreadable]]  # (index of the message in the frame, what is wrong), to dead-letter
    spans: int  # the spans folded


def fold_frame(values: Iterable[bytes], load: Callable[[bytes], SessionState | None], book: PriceBook,
               rules: HealthRules, rows_body_bytes: int) -> FoldedFrame:
    """The frame's `spans` messages (their values, in frame order) decoded, encoded as
    spans-table rows and folded; `load(key)` gives a session's stored state, or None."""
    rows = SpanRowBodies(rows_body_bytes)
    folder = BatchFolder(load, book, rules)
    unreadable: list[tuple[int, Unreadable]] = []
    count = 0
    for index, value in enumerate(values):
        spans, bad = decode_message(value)
        if bad:
            unreadable.extend((index, item) for item in bad)
        if spans:
            rows.add(spans)
            folder.add(spans)
            count += len(spans)
    return FoldedFrame(rows.finish(), folder.result, unreadable, count)
