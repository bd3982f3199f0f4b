"""GenerationWorker: runs chat turns one at a time on a single thread, in arrival order.

The model is loaded once and is not safe to run concurrently; every request's turn is queued here
and waits its turn, so concurrent clients all get answers and tokens never interleave. The queue
is bounded (a full queue is refused, so the server can answer 429 at once), and a turn whose
client has gone is cancelled: dropped if it is still queued, stopped at its next token if running.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the chat queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class TurnCancelled(Exception):
    """Raised inside a running turn (from its text callback) when its client has gone."""


class Job:
    """One queued turn. `fn` receives the job, so it can call `job.check()` between tokens."""

    def __init__(self, fn: Callable[["Job"], object]):
        self.fn = fn
        self.future: Future = Future()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        self.future.cancel()  # succeeds only while still queued

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise TurnCancelled()


class GenerationWorker:
    def __init__(self, max_waiting: int = 16):
        self.max_waiting = max_waiting
        self._jobs: queue.Queue = queue.Queue()  # FIFO: served in the order submitted
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ohlora-generation", daemon=True)
        self._thread.start()
        self.running = 0
        self.cancelled = 0
        self._avg_s = 5.0  # running mean of a turn's time, for Retry-After

    def submit(self, fn: Callable[[Job], object]) -> Job:
        with self._submit_lock:
            if self.waiting >= self.max_waiting:
                raise QueueFull(self.retry_after())
            job = Job(fn)
            self._jobs.put(job)
        return job

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: about one turn."""
        return max(1, math.ceil(self._avg_s))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancelled or not job.future.set_running_or_notify_cancel():
                self.cancelled += 1
                continue
            self.running = 1
            t0 = time.perf_counter()
            try:
                job.future.set_result(job.fn(job))
            except TurnCancelled as e:
                self.cancelled += 1
                job.future.set_exception(e)
            except BaseException as e:  # delivered to the waiting request
                job.future.set_exception(e)
            finally:
                self.running = 0
                self._avg_s = 0.8 * self._avg_s + 0.2 * (time.perf_counter() - t0)

    def shutdown(self, timeout: float | None = None) -> None:
        """Finish the turn in progress (and any queued before), then stop."""
        self._jobs.put(None)
        self._thread.join(timeout)
