"""Store writes on a background thread, in order, so the model never waits on HDF5.

The extraction loop hands each finished batch's write to :class:`BackgroundWriter` and goes on
with the next batch. Leaving the ``with`` block always drains the queue, on success, on a
stop signal and on an exception alike, so every batch the model finished is in the store
before the run returns or raises. A failed write stops the later ones (rows stay in order)
and is raised in the extracting thread.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable


class BackgroundWriter:
    """Run callables one after another on a single thread; at most ``depth`` wait."""

    def __init__(self, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._failed = False  # stays set once a write failed, after its error was raised
        self.busy_s = 0.0  # seconds spent writing
        self.wait_s = 0.0  # seconds the caller waited for room in the queue
        self._thread = threading.Thread(target=self._work, name="featx-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], None]) -> None:
        self._raise()
        t0 = time.perf_counter()
        self._queue.put(write)
        self.wait_s += time.perf_counter() - t0

    def drain(self) -> None:
        """Wait until every submitted write is done; raise the first write error, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _work(self) -> None:
        while True:
            write = self._queue.get()
            if write is None:
                return
            if self._failed:
                continue  # keep the store in order: nothing after a failed write, even once it was raised
            t0 = time.perf_counter()
            try:
                write()
            except BaseException as exc:  # raised again in the caller's thread
                self._error, self._failed = exc, True
            self.busy_s += time.perf_counter() - t0

    def _raise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.drain()
            return
        try:
            self.drain()  # the batches already computed still reach the store
        except BaseException as write_error:
            raise exc from write_error
