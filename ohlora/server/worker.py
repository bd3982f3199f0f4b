"""GenerationWorker: runs chat turns one at a time on a single thread, in arrival order.

The model is loaded once and is not safe to run concurrently; every request's turn is queued here
and waits its turn, so concurrent clients all get answers and tokens never interleave.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable


class GenerationWorker:
    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ohlora-generation", daemon=True)
        self._thread.start()
        self.running = 0

    def submit(self, fn: Callable) -> Future:
        fut: Future = Future()
        self._jobs.put((fn, fut))
        return fut

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            self.running = 1
            try:
                fut.set_result(fn())
            except BaseException as e:  # delivered to the waiting request
                fut.set_exception(e)
            finally:
                self.running = 0

    def shutdown(self, timeout: float | None = None) -> None:
        """Finish the turn in progress (and any queued before), then stop."""
        self._jobs.put(None)
        self._thread.join(timeout)
