"""The time window a read covers: the last `hours` (24 by default), or `from`/`to`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status

MAX_WINDOW = timedelta(days=366)
# What the DateTime columns can hold (hourly rollups are DateTime, 1970-2106).
EARLIEST, LATEST = datetime(1970, 1, 2, tzinfo=UTC), datetime(2106, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def request_time() -> datetime:
    """Now, rounded up to the whole second: what "the last N hours" ends at and what `incomplete`
    is judged against. Every request in one second asks the same question, so the store can
    reuse one answer for them (spanstream/result_cache.py); rounding up keeps a span written a
    moment ago inside the window."""
    now = datetime.now(UTC)
    return now.replace(microsecond=0) + timedelta(seconds=1) if now.microsecond else now


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly: how times are bound into queries
    (fromUnixTimestamp64Micro) and carried in cursors. A naive time is UTC, as the driver returns it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    def parameters(self) -> dict[str, int]:
        """`window_start` and `window_end` in microseconds, for fromUnixTimestamp64Micro({..:Int64})."""
        return {"window_start": micros(self.start), "window_end": micros(self.end)}


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"`{name}` needs a time zone, e.g. 2025-01-31T00:00:00Z")
    moment = moment.astimezone(UTC)
    if not EARLIEST <= moment < LATEST:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"`{name}` must lie between 1970 and 2105")
    return moment


async def _window(
    hours: Annotated[float | None, Query(gt=0, le=MAX_WINDOW.days * 24, description="the last N hours (default 24)")] = None,
    start: Annotated[datetime | None, Query(alias="from", description="start of the window, with a time zone")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="end of the window (default now)")] = None,
) -> TimeWindow:
    now = request_time()
    if hours is not None and start is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "give either `hours` or `from`/`to`, not both")
    end = _aware(end, "to") if end is not None else now
    if start is not None:
        start = _aware(start, "from")
    else:
        start = end - timedelta(hours=hours if hours is not None else 24)
    if start >= end:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "`from` must be before `to`")
    if end - start > MAX_WINDOW:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"a window spans at most {MAX_WINDOW.days} days")
    return TimeWindow(start, end)


Window = Annotated[TimeWindow, Depends(_window)]
