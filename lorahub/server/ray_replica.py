"""The engine deployment on Ray: one lorahub Engine per replica, adapter sets as multiplexed models.

Ray's `@serve.multiplexed` loader makes a request's adapter set resident (and pinned) in the
replica's engine; Ray's per-replica LRU evicts sets beyond `max_sets`, and the evicted set lets go
of its adapters, which leave the device unless another resident set still holds them. The
request itself always runs with the adapters it carries, so a routing mistake can cost a load,
never an image made with the wrong adapters. Replicas read adapter files by the path the
registry gave, or from the Hub's cache by `repo@revision` (ray_files); they never open the
registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from typing import Any

from lorahub.errors import InvalidInputError
from lorahub.server.ray_config import ENGINE, RaySettings, engine_options
from lorahub.server.ray_engine import ReplicaReply, adapter_set_id
from lorahub.server.ray_files import HubSource, ReplicaFiles
from lorahub.types import AdapterSpec

SET_COUNTERS = ("set_requests", "set_hits", "set_loads", "set_evictions")
PENDING = 256  # adapter sets whose specs a replica remembers for its loader (most recent first)


class AdapterSet:
    """One adapter set resident in a replica's engine (Ray's multiplexed "model")."""

    def __init__(self, replica: EngineReplica, set_id: str, keys: list[str]):
        self.replica, self.set_id, self.keys = replica, set_id, keys
        self.released = False

    def release(self) -> None:
        """Let go of the set's adapters (once): Ray evicted it."""
        if self.released:
            return
        self.released = True
        self.replica.drop(self)

    def __del__(self) -> None:  # Ray's multiplexing calls this when it evicts the set
        try:
            self.release()
        except Exception:
            pass


class EngineReplica:
    """What one engine replica holds: its Engine, the sets it was asked for, its counters."""

    def __init__(self, settings: RaySettings, name: str, engine: Any = None):
        self.settings, self.name = settings, name
        self.engine = engine if engine is not None else build_replica_engine(settings)
        self.counts = dict.fromkeys(SET_COUNTERS, 0)
        self.files = ReplicaFiles(settings.adapters_from)
        # set id -> specs, for Ray's loader (called with the id only). Not emptied on eviction:
        # an evicted set's `__del__` can run after a new request for that set stored its specs.
        self.pending: OrderedDict[str, tuple[AdapterSpec, ...]] = OrderedDict()

    async def load(self, set_id: str) -> AdapterSet:
        """Make the set's adapters resident and pinned (the multiplexed loader's work)."""
        specs = self.pending.get(set_id)
        if specs is None:
            raise InvalidInputError(f"adapter set {set_id} was asked for without its adapters")
        keys = await asyncio.to_thread(self.engine.hold, list(specs))
        self.counts["set_loads"] += 1
        return AdapterSet(self, set_id, keys)

    def drop(self, adapter_set: AdapterSet) -> None:
        """An evicted set: unpin its adapters (they leave the device unless pinned elsewhere)."""
        self.counts["set_evictions"] += 1
        self.engine.let_go(adapter_set.keys)

    async def generate(
        self, request: Any, set_id: str, load: Any, sources: dict[str, HubSource] | None = None
    ) -> ReplicaReply:
        """Run `request` with its adapter set resident (loaded through `load` when it is not)."""
        specs = list(request.adapters)
        expected = adapter_set_id(specs)
        if set_id and set_id != expected:
            raise InvalidInputError(
                f"request routed as adapter set {set_id} but its adapters make {expected}"
            )
        if sources:  # files from the Hub's cache: same keys, so the same set and image
            specs = await asyncio.to_thread(self.files.resolve, specs, sources)
            request = dataclasses.replace(request, adapters=tuple(specs))
        if specs:
            self.counts["set_requests"] += 1
            if await asyncio.to_thread(self.engine.holds, specs):
                self.counts["set_hits"] += 1
        if set_id:
            self.remember(set_id, tuple(specs))
            await load(set_id)
        result = await asyncio.wrap_future(self.engine.submit(request))
        return ReplicaReply(result, self.name, self.stats(), self.engine.status())

    def remember(self, set_id: str, specs: tuple[AdapterSpec, ...]) -> None:
        """Keep a set's specs for the loader (the least recently asked for go beyond PENDING)."""
        self.pending[set_id] = specs
        self.pending.move_to_end(set_id)
        while len(self.pending) > PENDING:
            self.pending.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        """The engine's figures and this replica's adapter-set counters."""
        return {**self.engine.stats(), **self.counts}

    def check_health(self) -> None:
        """Raise when the engine's worker thread has died (Ray then replaces the replica)."""
        worker = getattr(self.engine, "_worker", None)
        if worker is not None and not worker.is_alive():
            raise RuntimeError("the engine's worker thread stopped")


def build_replica_engine(settings: RaySettings) -> Any:
    """The replica's engine, its pipeline loaded now (a replica is ready when it can generate)."""
    from lorahub.inference import Engine

    engine = Engine(
        base=settings.base,
        device=settings.device,
        dtype=settings.dtype,
        max_resident=settings.max_resident,
        cpu_cache_bytes=settings.cpu_cache_mb << 20,
        max_queue=None,  # Ray admits: max_ongoing_requests is the one bound
    )
    engine.runtime()
    return engine.start()


def replica_name() -> str:
    """This replica's id as Ray names it (its label in /metrics)."""
    from ray import serve

    ctx = serve.get_replica_context()
    replica_id = getattr(ctx, "replica_id", None)
    return str(getattr(replica_id, "unique_id", None) or getattr(ctx, "replica_tag", "replica"))


def engine_deployment(settings: RaySettings) -> Any:
    """The engine deployment class for `settings` (the set limit is fixed when the class is made)."""
    from ray import serve

    max_sets = settings.max_sets

    class LorahubEngine:
        """One lorahub Engine; adapter sets are Ray's multiplexed models."""

        def __init__(self, args: dict[str, Any]):
            self.replica = EngineReplica(RaySettings.from_args(args), replica_name())

        @serve.multiplexed(max_num_models_per_replica=max_sets)
        async def load_set(self, set_id: str) -> AdapterSet:
            return await self.replica.load(set_id)

        async def generate(self, request: Any, sources: Any = None) -> ReplicaReply:
            set_id = serve.get_multiplexed_model_id()
            return await self.replica.generate(request, set_id, self.load_set, sources)

        def check_health(self) -> None:
            self.replica.check_health()

    return serve.deployment(name=ENGINE, **engine_options(settings))(LorahubEngine)
