"""Admission control in front of the engine's single worker thread.

With batching on (`lorahub serve --max-batch`), the engine's worker gathers waiting compatible
requests into one denoising loop; up to `max_batch` of them run at once.

The event loop never runs engine code: `generate(request)` admits the request (or raises
QueueFullError, answered 429 with Retry-After), hands it to the engine's worker (`submit`, one
thread owns the pipeline) and awaits the future. An engine without `submit` gets a one-thread
executor of our own. A request whose client went away before it started is cancelled (never
run); one already running goes to the end (a pipeline is never interrupted half-way).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lorahub.server.errors import ClientGoneError, QueueFullError

POLL_SECONDS = 0.25


class EngineWorker:
    """Counts requests admitted and not finished; at most `max_queue` wait behind the running one."""

    def __init__(self, engine: Any, max_queue: int = 32, owned: bool = False):
        self.engine = engine
        self.max_queue = max(0, int(max_queue))
        self.owned = owned
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._mean_seconds: Callable[[], float | None] = lambda: None

    @property
    def capacity(self) -> int:
        """Requests admitted at once: those running (one, or a batch) plus `max_queue` waiting."""
        return self.max_queue + int(getattr(self.engine, "batch_slots", 1))

    def depth(self) -> int:
        """Requests admitted and not finished (running or waiting)."""
        with self._lock:
            return self._inflight

    def set_latency_source(self, mean_seconds: Callable[[], float | None]) -> None:
        """Where Retry-After estimates come from (the mean time of a generation request)."""
        self._mean_seconds = mean_seconds

    def retry_after(self) -> int:
        """Seconds until a slot is likely free (the running request ends), 1..120."""
        mean = self._mean_seconds() or 1.0
        return int(min(120, max(1, math.ceil(mean))))

    def submit(self, request: Any) -> Future[Any]:
        """Admit `request` or raise QueueFullError; returns the engine's future."""
        with self._lock:
            if self._inflight >= self.capacity:
                raise QueueFullError(
                    f"generation queue is full ({self._inflight} requests waiting or running); retry later",
                    retry_after=self.retry_after(),
                )
            self._inflight += 1
        try:
            future = self._dispatch(request)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    async def generate(
        self, request: Any, is_disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> Any:
        """Run `request` on the engine's worker thread and await its GenerationResult.

        With `is_disconnected`, a request still waiting when its client has gone is cancelled
        (ClientGoneError): queued work nobody will read is not run."""
        if is_disconnected is not None and await is_disconnected():
            raise ClientGoneError("the client disconnected before the request was queued")
        future = self.submit(request)
        waiting = asyncio.wrap_future(future)
        if is_disconnected is None:
            return await waiting
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=POLL_SECONDS)
            if done or future.running():
                return await waiting
            if await is_disconnected() and future.cancel():
                raise ClientGoneError("the client disconnected before its request started")

    def warm_up(self) -> None:
        """Load the base pipeline now, in the background, rather than on the first request."""
        load = getattr(self.engine, "runtime", None)
        if load is not None:
            threading.Thread(
                target=_quietly, args=(load,), name="lorahub-warm-up", daemon=True
            ).start()

    def shutdown(self) -> None:
        """Finish queued work; close the engine when this app built it."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self.owned and hasattr(self.engine, "close"):
            self.engine.close()

    def _dispatch(self, request: Any) -> Future[Any]:
        submit = getattr(self.engine, "submit", None)
        if submit is not None:
            return submit(request)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorahub-engine")
        return self._executor.submit(self.engine.generate, request)

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._inflight -= 1


def _quietly(fn: Callable[[], Any]) -> None:
    """Run a warm-up step; its errors surface again on the first request, with its message."""
    try:
        fn()
    except Exception:
        pass
