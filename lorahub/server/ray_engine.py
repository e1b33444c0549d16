"""The ingress's engine on Ray: hands resolved requests to the engine deployment, by adapter set.

`RayEngine` is what `create_app(engine=...)` receives on the ingress replica: it has the engine's
`submit(request) -> Future`, `stats()` and `status()`, so every route, the admission control,
the error shape and `/metrics` are the ones `lorahub serve` runs. Each request goes to the engine
deployment with `multiplexed_model_id` = its adapter set's id, so Ray routes it to a replica that
already holds the set. Ray is imported only when a request is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from lorahub.errors import CapacityError, InvalidInputError, LorahubError
from lorahub.server.errors import STATUS, QueueFullError
from lorahub.types import AdapterSpec

UNAVAILABLE = (
    "ActorDiedError",
    "ActorUnavailableError",
    "RayActorError",
    "DeploymentUnavailableError",
    "ActorUnschedulableError",
    "WorkerCrashedError",
    "NodeDiedError",
)


class ReplicaUnavailableError(CapacityError):
    """The replica running a request went away (Ray restarts it): retry the request."""

    code = "replica_unavailable"

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAdaptersError(InvalidInputError):
    """A request with more adapters than one replica holds in a set."""

    code = "too_many_adapters"


STATUS[TooManyAdaptersError] = 422  # the server's one table, as for every error class


@dataclass
class ReplicaReply:
    """What an engine replica sends back: the result, who ran it, and its figures then."""

    result: Any
    replica: str
    stats: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)


def adapter_set_id(specs: list[AdapterSpec] | tuple[AdapterSpec, ...]) -> str:
    """The canonical id of a request's adapter set: its sorted weight keys, hashed ('' when none).

    Weights are left out on purpose: residency costs the files (reading, uploading), and any
    weights of a resident set are applied per request for free, so `a@0.5` and `a@1` share a
    replica instead of loading the same file twice. The key is the tensor + file hash the
    engine caches by (AutoV3 alone would miss PEFT alphas kept in metadata)."""
    keys = sorted({s.key for s in specs})
    if not keys:
        return ""
    return "set-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


class RayEngine:
    """The engine of an ingress replica: requests go to the engine deployment's replicas."""

    def __init__(
        self,
        handle: Any,
        *,
        device: str,
        max_set_adapters: int,
        multiplex: bool = True,
        adapters_from: str = "path",
        registry_path: str | None = None,
    ) -> None:
        self.handle = handle
        self.device = device
        self.max_set_adapters = max_set_adapters
        self.multiplex = multiplex
        self.adapters_from = adapters_from
        self.registry_path = registry_path
        self.replicas: dict[str, ReplicaReply] = {}

    @property
    def batch_slots(self) -> int:
        """Requests a replica runs at once, as the ingress counts them."""
        return 1

    def warm_up(self) -> None:
        """Nothing to load here: each replica loads its pipeline before it is ready."""

    def submit(self, request: Any) -> Future[Any]:
        """Send `request` to a replica holding its adapter set; a Future of its GenerationResult."""
        if len(request.adapters) > self.max_set_adapters:
            raise TooManyAdaptersError(
                f"request has {len(request.adapters)} adapters; a replica holds sets of at most "
                f"{self.max_set_adapters} (lorahub serve --ray --max-set-adapters)"
            )
        loop = asyncio.get_running_loop()
        return asyncio.run_coroutine_threadsafe(self._call(request), loop)

    async def _call(self, request: Any) -> Any:
        set_id = adapter_set_id(request.adapters)
        handle = self.handle
        if self.multiplex and set_id:
            handle = handle.options(multiplexed_model_id=set_id)
        sources = await asyncio.to_thread(self.sources, list(request.adapters))
        try:
            reply = await handle.generate.remote(request, sources)
        except Exception as exc:
            raise translate(exc) from None
        self.replicas[reply.replica] = ReplicaReply(None, reply.replica, reply.stats, reply.status)
        return reply.result

    def sources(self, specs: list[AdapterSpec]) -> dict[str, Any]:
        """The Hub sources of the request's adapters (none when replicas read files by path)."""
        if self.adapters_from == "path" or not specs:
            return {}
        from lorahub.registry import Registry
        from lorahub.server.ray_files import hub_sources

        with Registry(self.registry_path) as registry:
            return hub_sources(registry, specs)

    def stats(self) -> dict[str, Any]:
        """The replicas' figures (as of their last reply) summed, and each one's under `replicas`."""
        replies = sorted(self.replicas.items())
        merged = merge_stats([r.stats for _, r in replies])
        merged["replicas"] = {name: r.stats for name, r in replies}
        return merged

    def status(self) -> dict[str, Any]:
        """Each replica's loaded base and resident adapters (as of its last reply)."""
        bases = []
        for name, reply in sorted(self.replicas.items()):
            bases += [{**b, "replica": name} for b in reply.status.get("bases", [])]
        return {"device": self.device, "bases": bases, "replicas": len(self.replicas)}

    def close(self) -> None:
        """Nothing to close here: the replicas belong to Ray."""


def translate(exc: BaseException) -> BaseException:
    """A Ray failure as the error a client of `lorahub serve` would see."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, LorahubError):
        return cause
    if isinstance(exc, LorahubError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "BackPressureError" in names:
        return QueueFullError("every replica's queue is full; retry later")
    if names & set(UNAVAILABLE) or (cause is not None and type(cause).__name__ in UNAVAILABLE):
        return ReplicaUnavailableError(
            "the replica running this request stopped (Ray restarts it); nothing was generated, "
            "retry the request"
        )
    return exc


def merge_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers summed, histograms summed bucket by bucket (the replicas share the buckets)."""
    out: dict[str, Any] = {}
    for one in stats:
        for key, value in one.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                out[key] = out.get(key, 0) + value
            elif isinstance(value, dict) and "buckets" in value:
                out[key] = _merge_histogram(out.get(key), value)
    return out


def _merge_histogram(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """Two histograms of the same buckets as one (cumulative counts add up bound by bound)."""
    if a is None:
        return {"buckets": [list(x) for x in b["buckets"]], "sum": b["sum"], "count": b["count"]}
    bounds_a = [bound for bound, _ in a["buckets"]]
    if bounds_a != [bound for bound, _ in b["buckets"]]:
        return a
    buckets = [[x, n + m] for (x, n), (_, m) in zip(a["buckets"], b["buckets"], strict=True)]
    return {"buckets": buckets, "sum": a["sum"] + b["sum"], "count": a["count"] + b["count"]}
