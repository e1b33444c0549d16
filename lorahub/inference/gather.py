"""The engine worker's batch gathering: take the next request, then join compatible ones.

After taking a request, the worker waits at most `window_s` for more requests with the same
`batching.batch_key` until their images reach `max_rows`. Requests that cannot join (another
size, scheduler, base...) are held, in order, for the next batch. With no window (or a maximum
of one row) it returns one request at a time: the engine's behaviour without batching.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from typing import Any

from lorahub.inference.batching import batch_key
from lorahub.metrics import EngineMetrics

Item = tuple[Any, Any]  # (GenerationRequest, Future)


class Gatherer:
    """Turns the engine queue into batches; `next_batch()` is None once the engine stops."""

    def __init__(
        self, source: queue.Queue, max_rows: int, window_s: float | None, metrics: EngineMetrics
    ):
        self.source, self.max_rows, self.window_s = source, max_rows, window_s
        self.metrics = metrics
        self.held: deque[Item] = deque()
        self.stopping = False

    @property
    def batching(self) -> bool:
        return bool(self.window_s) and self.max_rows > 1

    def next_batch(self) -> list[Item] | None:
        """The next request and the compatible ones that arrive within the window."""
        first = self._take()
        if first is None:
            return None
        batch = [first]
        if not self.batching:
            return batch
        start = time.monotonic()
        key, rows = batch_key(first[0]), first[0].n
        for item in list(self.held):
            if rows + item[0].n <= self.max_rows and batch_key(item[0]) == key:
                self.held.remove(item)
                batch.append(item)
                rows += item[0].n
        deadline = start + (self.window_s or 0.0)
        while rows < self.max_rows and not self.stopping:
            polled = self._poll(deadline - time.monotonic())
            if polled is None:
                break
            if rows + polled[0].n <= self.max_rows and batch_key(polled[0]) == key:
                batch.append(polled)
                rows += polled[0].n
            else:
                self.held.append(polled)
        self.metrics.observe("batch_wait_seconds", time.monotonic() - start)
        return batch

    def _take(self) -> Item | None:
        if self.held:
            return self.held.popleft()
        if self.stopping:
            return None
        item = self.source.get()
        if item is None:
            self.stopping = True
        return item

    def _poll(self, timeout: float) -> Item | None:
        """The next queued item within `timeout` seconds, None when none came (or on stop)."""
        try:
            item = self.source.get(timeout=timeout) if timeout > 0 else self.source.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self.stopping = True
        return item
