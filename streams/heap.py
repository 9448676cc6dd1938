"""The garbage collector's settings for a process that folds or sinks spans.

A fold frame decodes ~1,500 spans, about 60,000 container objects that all live until the frame
is folded. At CPython's default young threshold (700 allocations) the collector ran ~85 times a
frame, promoted most of them, and the older generations then walked them again together with
everything the process imported (Faust, aiokafka, pydantic: modules and classes that never
die): about a third of the fold's own work, measured. `gc.freeze()` takes what exists once the
process has started out of every collection, and a larger young generation lets a frame's spans
die by reference count before a collection sees them. Cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Called once the process has started, before the stream work begins (again is harmless)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
