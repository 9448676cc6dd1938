"""The latency probe of bench_pipeline: when each produced session first shows all its spans in
the API's sessions list, as a user listing sessions would see it.

The first probe listed the newest 1,000 sessions every 50 ms: 547 KiB and ~290 ms an answer,
0.85 cores of the server with no span flowing, so it took the CPU whose effect it measured. The
`pending` probe asks the same endpoint (`GET /api/agents/sessions`, the ClickHouse sessions view
through the API) for only the sessions it still waits for: the window starts at the `last_at`
of the oldest produced session not yet seen complete, oldest first. A session counts as visible
at the moment the answer that first lists it with all its spans arrived, so the latency is still
produce -> visible through the API; a slower poll only adds to it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta

import httpx

LIST_LIMIT = 1000  # the endpoint's maximum
NEWEST_POLL_S = 0.05
PENDING_POLL_S = 0.1
# Pages of one `pending` poll at most: past that the window holds sessions long lost, not late.
PENDING_PAGES = 5
# A session the probe waits for this long is given up by the window (bench_pipeline looks it up
# alone afterwards), so that one lost session does not make every later answer large.
GIVE_UP_S = 30.0
MODES = ("pending", "newest")


class SessionWatch(threading.Thread):
    """Notes in `first_complete` when each session first appears with `spans_per_session` spans.
    `schedule` is every session to be produced, in produce order, with its `last_at`; the
    producer calls `produced(index, at)` after queueing session `index`."""

    def __init__(self, base: str, key: str, spans_per_session: int, schedule: list[tuple[str, datetime]],
                 mode: str = "pending") -> None:
        super().__init__(daemon=True)
        if mode not in MODES:
            raise ValueError(f"probe mode {mode!r}: one of {', '.join(MODES)}")
        self._http = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10)
        self._spans = spans_per_session
        self._schedule = schedule
        self._produced_at: list[float] = []
        self._oldest = 0  # no session before this index is still awaited
        self.mode = mode
        self.first_complete: dict[str, float] = {}
        self.polls = 0
        self.requests = 0
        self.rows = 0
        self.poll_seconds = 0.0
        self.response_bytes = 0
        self.errors: Counter[str] = Counter()
        self.stopping = threading.Event()

    def produced(self, index: int, at: float) -> None:
        assert index == len(self._produced_at), "sessions are produced in schedule order"
        self._produced_at.append(at)

    def run(self) -> None:
        interval = PENDING_POLL_S if self.mode == "pending" else NEWEST_POLL_S
        while not self.stopping.is_set():
            started = time.perf_counter()
            self._poll_pending() if self.mode == "pending" else self._poll_newest()
            self.polls += 1
            self.poll_seconds += time.perf_counter() - started
            self.stopping.wait(max(0.0, started + interval - time.perf_counter()))
        self._http.close()

    def _poll_newest(self) -> None:
        self._list({"hours": 1, "limit": LIST_LIMIT})

    def _poll_pending(self) -> None:
        window_start = self._window_start()
        params = {"from": (window_start - timedelta(milliseconds=1)).isoformat(), "sort": "last_at",
                  "order": "asc", "limit": LIST_LIMIT}
        for _ in range(PENDING_PAGES):
            cursor = self._list(params)
            if cursor is None:
                return
            params = {**params, "cursor": cursor}

    def _window_start(self) -> datetime:
        produced = len(self._produced_at)
        give_up = time.perf_counter() - GIVE_UP_S
        while self._oldest < produced and (self._schedule[self._oldest][0] in self.first_complete
                                           or self._produced_at[self._oldest] < give_up):
            self._oldest += 1
        if self._oldest < produced:
            return self._schedule[self._oldest][1]
        # Nothing awaited (before the first produce, say): a window past every session produced,
        # so the answer is empty, yet the request costs what one costs and "polling alone" says so.
        if produced < len(self._schedule):
            return self._schedule[produced][1]
        return self._schedule[-1][1] + timedelta(seconds=1)

    def _list(self, params: dict) -> str | None:
        """One request; notes what it shows complete and returns the next page's cursor."""
        try:
            response = self._http.get("/api/agents/sessions", params=params)
            response.raise_for_status()
            page = response.json()
            items = page["items"]
        except (httpx.HTTPError, ValueError, KeyError) as error:
            self.errors[type(error).__name__] += 1
            return None
        answered = time.perf_counter()
        self.requests += 1
        self.rows += len(items)
        self.response_bytes += len(response.content)
        for item in items:
            if item["spans"] >= self._spans and item["session_id"] not in self.first_complete:
                self.first_complete[item["session_id"]] = answered
        return page.get("next_cursor")
