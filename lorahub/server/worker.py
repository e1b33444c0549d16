"""Admission control in front of the engine's single worker thread.

With batching on (`lorahub serve --max-batch`), the engine's worker gathers waiting compatible
requests into one denoising loop; up to `max_batch` of them run at once.

The event loop never runs engine code: `generate(request)` admits the request (or raises
QueueFullError, answered 429 with Retry-After), hands it to the engine's worker (`submit`, one
thread owns the pipeline) and awaits the future. A request whose client went away before it
started is cancelled (never run); one already running goes to the end (a pipeline is never
interrupted half-way).

This is the ONE admission bound of a served engine: the app builds its `Engine` with no queue
bound of its own (`max_queue=None`), and a Ray ingress's `RayEngine` has none; the worker counts
the requests admitted and not finished, so the limit, the 429 and /v1/status agree.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Protocol

from lorahub.server.errors import ClientGoneError, QueueFullError

POLL_SECONDS = 0.25


class ServedEngine(Protocol):
    """What the server asks of an engine (`lorahub.inference.Engine`, the Ray ingress's
    `RayEngine`, a test's double)."""

    @property
    def device(self) -> str: ...

    @property
    def batch_slots(self) -> int:
        """Requests that run at once (one, or a batch)."""

    def submit(self, request: Any) -> Future[Any]:
        """Hand `request` to the engine's worker; a Future of its GenerationResult."""

    def warm_up(self) -> None:
        """Load what the first request would (a no-op where there is nothing to load)."""

    def stats(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class EngineWorker:
    """Counts requests admitted and not finished; at most `max_queue` wait behind the running one."""

    def __init__(self, engine: ServedEngine, max_queue: int = 32, owned: bool = False):
        self.engine = engine
        self.max_queue = max(0, int(max_queue))
        self.owned = owned
        self._lock = threading.Lock()
        self._inflight = 0
        self._mean_seconds: Callable[[], float | None] = lambda: None

    @property
    def capacity(self) -> int:
        """Requests admitted at once: those running (one, or a batch) plus `max_queue` waiting."""
        return self.max_queue + int(self.engine.batch_slots)

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
            future = self.engine.submit(request)
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
        threading.Thread(
            target=_quietly, args=(self.engine.warm_up,), name="lorahub-warm-up", daemon=True
        ).start()

    def shutdown(self) -> None:
        """Close the engine (its queued work finishes first) when this app built it."""
        if self.owned:
            self.engine.close()

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._inflight -= 1


def _quietly(fn: Callable[[], Any]) -> None:
    """Run a warm-up step; its errors surface again on the first request, with its message."""
    try:
        fn()
    except Exception:
        pass
