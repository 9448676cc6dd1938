"""A blocking loop (the spans batcher, a ClickHouse sink) run as a service of a Faust worker."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import mode

log = logging.getLogger(__name__)


class OnThread(mode.Service):
    """Runs `work(stopping)` on a thread of its own, not on the event loop's executor: these
    loops never return while the process runs, and the executor's few threads also run every
    ClickHouse query. If `work` raises, the process stops, so that its supervisor starts it
    again. Stopping sets `stopping` and waits for `work` to return, so that a sink can write and
    commit what it holds before the store closes."""

    def __init__(self, name: str, work: Callable[[threading.Event], None], join_seconds: float = 60.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._name = name
        self._work = work
        self._join_seconds = join_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return self._name

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                self._work(self._stopping)
            except BaseException as error:  # noqa: BLE001 - any failure stops the process
                log.exception("%s failed", self._name)
                if not self._stopping.is_set():
                    loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.crash(error)))

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self._join_seconds)
            if self._thread.is_alive():
                log.error("%s did not stop within %.0f s", self._name, self._join_seconds)
