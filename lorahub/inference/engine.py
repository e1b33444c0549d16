"""The inference engine: one worker owns the pipelines; requests queue; `generate(request)`.

Usable directly (the CLI calls `generate`, which runs inline) or from a server thread
(`start()` a worker, then `submit()`/`generate()` from any thread). Each request has its own
seeded generators, so its images never depend on what else is queued. `generate_batch` runs
requests with different adapter sets in shared denoising loops (`inference.batching`); with
`batch_window_ms`, the worker gathers queued compatible requests into such loops.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from lorahub.errors import CapacityError, InvalidInputError, NotFoundError, UnsupportedError
from lorahub.inference.adapters import CpuCache
from lorahub.inference.batching import Outcome, chunk_rows, run_batch
from lorahub.inference.gather import Gatherer
from lorahub.inference.pipelines import PipelineCache
from lorahub.inference.requests import GenerationRequest, GenerationResult
from lorahub.inference.runtime import BaseRuntime
from lorahub.metrics import EngineMetrics
from lorahub.types import AdapterSpec

GiB = 1 << 30


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings. `slot_adapters` plan the compile-safe slots when `compile` is on."""

    base: str = "tiny"
    device: str | None = None
    dtype: str | None = None
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    slot_adapters: tuple[AdapterSpec, ...] = ()
    slot_rank: int | None = None
    max_resident: int = 16
    max_resident_bytes: int = 2 * GiB
    cpu_cache_bytes: int = 4 * GiB
    pipeline_cache_size: int = 1
    max_queue: int | None = 64  # None: no bound here, the caller admits (as `lorahub serve` does)
    max_batch: int = 8
    batch_window_ms: float | None = None
    fuse_after: int | None = None
    trust_pickle: bool = False
    freeze_gc: bool = True
    pipe_loader: Any = field(default=None, compare=False)


def check_device(device: str) -> str:
    """`device` when torch can use it here; one clear error line otherwise."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise InvalidInputError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError(
            f"device {device!r} asked for, but CUDA is not available here; use --device cpu"
        )
    return device


class Engine:
    """Pipelines, adapter caches and a request queue behind one lock."""

    def __init__(self, config: EngineConfig | None = None, **overrides: Any):
        from lorahub.models import pick_device, pick_dtype

        self.config = replace(config or EngineConfig(), **overrides)
        self.device = check_device(pick_device(self.config.device))
        self.dtype = pick_dtype(self.device, self.config.dtype)
        self.metrics = EngineMetrics()
        self.cpu = CpuCache(
            self.config.cpu_cache_bytes,
            self.dtype,
            self.metrics,
            pin=self.device.startswith("cuda"),
            trust_pickle=self.config.trust_pickle,
        )
        self.pipelines = PipelineCache(
            self.config.pipeline_cache_size, self._load, lambda rt: rt.close()
        )
        self._lock = threading.RLock()
        self._queue: queue.Queue[tuple[GenerationRequest, Future] | None] = queue.Queue(
            self.config.max_queue or 0
        )
        self._worker: threading.Thread | None = None
        self._in_flight = 0
        window = self.config.batch_window_ms
        self._gatherer = Gatherer(
            self._queue,
            self.config.max_batch,
            None if window is None else window / 1000,
            self.metrics,
        )

    def _load(self, base: str) -> BaseRuntime:
        from lorahub.models import load_pipeline

        loader = self.config.pipe_loader or load_pipeline
        try:
            pipe = loader(base, device=self.device, dtype=self.config.dtype)
        except (ValueError, OSError) as exc:  # diffusers' word for a path or id it cannot use
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise NotFoundError(f"cannot load base model {base!r}: {first}") from None
        return BaseRuntime(base, pipe, self.config, self.cpu, self.metrics)

    def runtime(self, base: str | None = None) -> BaseRuntime:
        """The loaded runtime for `base` (loading it if needed)."""
        with self._lock:
            key = (base or self.config.base, str(self.dtype), self.device)
            return self.pipelines.get(key)

    def warm_up(self) -> None:
        """Load the default base's pipeline now rather than on the first request."""
        self.runtime()

    def family(self, base: str | None = None) -> str:
        """The base family of `base` (loads the pipeline)."""
        return self.runtime(base).family

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one request: through the worker when started, else inline on this thread."""
        if self._worker is not None:
            return self.submit(request).result()
        request.validate()
        with self._lock:
            return self._run(request)

    def _run(self, request: GenerationRequest) -> GenerationResult:
        self.metrics.inc("requests")
        try:
            result = self.runtime(request.base).run(request)
        except BaseException:
            self.metrics.inc("requests_failed")
            raise
        self.metrics.inc("images", len(result.images))
        return result

    def hold(self, specs: list[AdapterSpec], base: str | None = None) -> list[str]:
        """Make `specs` resident and pin them until `let_go` (a serving layer's adapter-set cache).

        CapacityError when they cannot all be resident; the keys held otherwise."""
        from lorahub.inference.pipelines import check_families

        with self._lock:
            rt = self.runtime(base)
            check_families(list(specs), rt.family, rt.base)
            return [a.key for a in rt.resident.acquire(list(specs))]

    def let_go(self, keys: list[str], base: str | None = None) -> None:
        """Undo one `hold`: unpin the keys and evict those no one else pins (memory comes back)."""
        with self._lock:
            rt = self.runtime(base)
            for key in keys:
                if key in rt.resident.items:
                    rt.resident.items.unpin(key)
                    if not rt.resident.items.pins(key):
                        rt.resident.evict(key)

    def holds(self, specs: list[AdapterSpec], base: str | None = None) -> bool:
        """Whether every adapter of `specs` is resident now (no read, no upload needed)."""
        with self._lock:
            items = self.runtime(base).resident.items
            return all(s.key in items for s in specs)

    def submit(self, request: GenerationRequest) -> Future:
        """Queue a request for the worker; CapacityError when the queue is full."""
        request.validate()
        if self._worker is None:
            self.start()
        future: Future = Future()
        try:
            self._queue.put_nowait((request, future))
        except queue.Full:
            raise CapacityError(
                f"the queue is full ({self.config.max_queue} requests); retry later"
            ) from None
        return future

    def start(self) -> Engine:
        """Start the worker thread (idempotent)."""
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="lorahub-engine", daemon=True
                )
                self._worker.start()
        return self

    def generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Run requests in shared denoising loops (up to `max_batch` images each), on this
        thread; each result equals the request run alone. Raises the first failure."""
        outcomes = self.run_batch(requests)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if isinstance(o, GenerationResult)]

    def run_batch(self, requests: list[GenerationRequest]) -> list[Outcome]:
        """Like `generate_batch`, but each request's result or its own exception, in order."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        valid = []
        for i, request in enumerate(requests):
            try:
                request.validate()
                valid.append(i)
            except Exception as exc:
                outcomes[i] = exc
        for chunk in chunk_rows([requests[i] for i in valid], self.config.max_batch):
            indices = [valid[j] for j in chunk]
            with self._lock:
                results = self._run_many([requests[i] for i in indices])
            for i, result in zip(indices, results, strict=True):
                outcomes[i] = result
        return [o for o in outcomes if o is not None]

    def _run_many(self, requests: list[GenerationRequest]) -> list[Outcome]:
        """Requests of one batch key through their base's runtime (lock held)."""
        self.metrics.inc("requests", len(requests))
        try:
            outcomes = run_batch(self.runtime(requests[0].base), requests)
        except Exception as exc:  # the base itself failed to load: every member fails with it
            outcomes = [exc] * len(requests)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                self.metrics.inc("requests_failed")
            else:
                self.metrics.inc("images", len(outcome.images))
        return outcomes

    def _work(self) -> None:
        while True:
            batch = self._gatherer.next_batch()
            if batch is None:
                return
            live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            self._in_flight = len(live)
            try:
                self._serve(live)
            finally:
                self._in_flight = 0

    def _serve(self, live: list[tuple[GenerationRequest, Future]]) -> None:
        """Run one gathered batch and hand every member its result or its own error."""
        if len(live) == 1:
            request, future = live[0]
            try:
                with self._lock:
                    future.set_result(self._run(request))
            except BaseException as exc:  # delivered to the caller through the future
                future.set_exception(exc)
            return
        if not live:
            return
        try:
            with self._lock:
                outcomes = self._run_many([r for r, _ in live])
        except BaseException as exc:
            outcomes = [exc] * len(live)
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def close(self) -> None:
        """Stop the worker after the queued requests; drop pipelines and caches."""
        worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join()
        with self._lock:
            for rt in self.pipelines.values():
                rt.close()
            self.pipelines.items.clear()
            self.cpu.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def queue_depth(self) -> int:
        """Requests waiting (queued or held back from a batch) plus those running."""
        return self._queue.qsize() + len(self._gatherer.held) + self._in_flight

    @property
    def batch_slots(self) -> int:
        """Requests that may run at once: `max_batch` when the worker gathers batches, else 1."""
        return self.config.max_batch if self._gatherer.batching else 1

    def stats(self) -> dict[str, Any]:
        """Counters, histograms, queue depth and resident adapters (for /metrics)."""
        resident = [a["name"] for rt in self.pipelines.values() for a in rt.status()["resident"]]
        return {
            **self.metrics.to_json(),
            "queue_depth": self.queue_depth,
            "queue_max": self.config.max_queue,
            "resident_adapters": len(resident),
            "cpu_cache_adapters": len(self.cpu.items),
            "cpu_cache_bytes": self.cpu.nbytes,
        }

    def status(self) -> dict[str, Any]:
        """Loaded bases with their resident adapters, and the queue (for /v1/status)."""
        return {
            "default_base": self.config.base,
            "device": self.device,
            "bases": [rt.status() for rt in self.pipelines.values()],
            "queue_depth": self.queue_depth,
            "queue_max": self.config.max_queue,
        }
