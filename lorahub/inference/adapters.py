"""The two-tier adapter cache: CPU memory (LRU by bytes) and resident on the pipeline's device.

CPU tier: owned state ready to copy. Resident tier: device tensors taken from a buffer pool
(recycled on eviction, so load/evict cycles do not grow memory) plus a precomputed index of the
pipeline layers each adapter touches. Adapters a running request uses are pinned.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lorahub.errors import CapacityError, IncompatibleError
from lorahub.inference import layers
from lorahub.inference.lru import LRU
from lorahub.inference.sources import CpuTerm, read_terms
from lorahub.metrics import EngineMetrics
from lorahub.types import AdapterSpec

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


@dataclass
class CpuAdapter:
    """An adapter held in CPU memory: its terms and their total bytes."""

    key: str
    name: str
    terms: list[CpuTerm]
    nbytes: int


@dataclass
class ResidentEntry:
    """One adapter module on the device, bound to its pipeline layer."""

    module: Any
    component: str
    block: str | None
    kind: str
    a: Any
    b: Any
    scale: float
    conv: Any


@dataclass
class ResidentAdapter:
    """An adapter resident on the pipeline's device."""

    key: str
    name: str
    entries: list[ResidentEntry]
    nbytes: int
    components: frozenset[str]
    modules: list[Any] = field(default_factory=list)


def block_of(name: str) -> str | None:
    """`down`/`mid`/`up` for UNet layers inside those blocks, else None."""
    if name.startswith("unet.down_blocks."):
        return "down"
    if name.startswith("unet.mid_block."):
        return "mid"
    if name.startswith("unet.up_blocks."):
        return "up"
    return None


class CpuCache:
    """LRU of CpuAdapters by total bytes."""

    def __init__(
        self,
        max_bytes: int,
        dtype: Any,
        metrics: EngineMetrics,
        *,
        pin: bool = False,
        trust_pickle: bool = False,
    ):
        self.max_bytes, self.dtype, self.metrics = max_bytes, dtype, metrics
        self.pin, self.trust_pickle = pin, trust_pickle
        self.items: LRU[str, CpuAdapter] = LRU(
            max_bytes=max_bytes,
            size_of=lambda a: a.nbytes,
            on_evict=lambda _key, _adapter: metrics.inc("evictions_cpu"),
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the cached adapters."""
        return self.items.nbytes

    def get(self, spec: AdapterSpec) -> CpuAdapter:
        """The adapter from memory, else read from disk (and cached)."""
        hit = self.items.get(spec.key)
        if hit is not None:
            self.metrics.inc("cpu_hits")
            return hit
        self.metrics.inc("cpu_misses")
        terms = read_terms(spec.path, self.dtype, trust_pickle=self.trust_pickle)
        if self.pin:
            for t in terms:
                t.a = t.a.pin_memory()
                t.b = None if t.b is None else t.b.pin_memory()
        adapter = CpuAdapter(spec.key, spec.name, terms, sum(t.nbytes for t in terms))
        self._put(adapter)
        return adapter

    def _put(self, adapter: CpuAdapter) -> None:
        """Cache `adapter`; one larger than the whole cache still evicts the rest, and is not kept."""
        self.items.make_room(adapter.nbytes)
        if adapter.nbytes <= self.max_bytes:
            self.items.put(adapter.key, adapter)

    def clear(self) -> None:
        """Drop every cached adapter."""
        self.items.clear()


class BufferPool:
    """Device tensors by (shape, dtype), recycled between evicted and newly resident adapters."""

    def __init__(self, device: Any, max_bytes: int):
        self.device, self.max_bytes = device, max_bytes
        self.free: dict[tuple, list[Any]] = {}
        self.nbytes = 0

    def take(self, like: Any) -> Any:
        """A device tensor shaped like `like` (contents undefined)."""
        import torch

        stack = self.free.get((tuple(like.shape), like.dtype))
        if stack:
            t = stack.pop()
            self.nbytes -= t.numel() * t.element_size()
            return t
        return torch.empty(like.shape, dtype=like.dtype, device=self.device)

    def give(self, tensor: Any) -> None:
        """Return a tensor to the pool (dropped when the pool is full)."""
        size = tensor.numel() * tensor.element_size()
        if self.nbytes + size <= self.max_bytes:
            self.free.setdefault((tuple(tensor.shape), tensor.dtype), []).append(tensor)
            self.nbytes += size


class ModuleIndex:
    """Canonical module name -> the pipeline's layer (wrapped on first use)."""

    def __init__(self, pipe: Any):
        self.pipe = pipe
        self.cache: dict[str, Any] = {}

    def get(self, name: str, adapter: str) -> Any:
        """The wrapped layer for `name`; IncompatibleError when the base has no such layer."""
        module = self.cache.get(name)
        if module is None:
            module = layers.install(self._find(name, adapter), name)
            self.cache[name] = module
        return module

    def _find(self, name: str, adapter: str) -> Any:
        from lorahub.formats.modules import find_layer

        component = name.partition(".")[0]
        if getattr(self.pipe, component, None) is None:
            raise IncompatibleError(
                f"adapter {adapter}: the base has no {component} for layer {name}"
            )
        layer = find_layer(self.pipe, name)
        if layer is None:
            raise IncompatibleError(
                f"adapter {adapter}: layer {name} does not exist in this base model"
            )
        return layer


class ResidentCache:
    """LRU of ResidentAdapters by count and bytes; evicts unpinned ones, freeing their layers."""

    def __init__(
        self,
        index: ModuleIndex,
        cpu: CpuCache,
        pool: BufferPool,
        metrics: EngineMetrics,
        *,
        max_count: int,
        max_bytes: int,
        on_evict: Callable[[ResidentAdapter], None],
    ):
        self.index, self.cpu, self.pool, self.metrics = index, cpu, pool, metrics
        self.max_count, self.max_bytes, self.on_evict = max_count, max_bytes, on_evict
        self.items: LRU[str, ResidentAdapter] = LRU(
            max_count=max_count,
            max_bytes=max_bytes,
            size_of=lambda a: a.nbytes,
            on_evict=self._dropped,
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the resident adapters."""
        return self.items.nbytes

    def acquire(self, specs: list[AdapterSpec]) -> list[ResidentAdapter]:
        """Make every spec resident and pin it; CapacityError when they cannot all fit."""
        if len(specs) > self.max_count:
            raise CapacityError(
                f"request needs {len(specs)} adapters but at most {self.max_count} can be resident"
            )
        out: list[ResidentAdapter] = []
        try:
            for spec in specs:
                adapter = self._get(spec)
                self.items.pin(adapter.key)
                out.append(adapter)
        except BaseException:
            self.release(out)
            raise
        return out

    def release(self, adapters: list[ResidentAdapter]) -> None:
        """Unpin adapters a finished request used."""
        for adapter in adapters:
            self.items.unpin(adapter.key)

    def _get(self, spec: AdapterSpec) -> ResidentAdapter:
        hit = self.items.get(spec.key)
        if hit is not None:
            self.metrics.inc("resident_hits")
            return hit
        self.metrics.inc("resident_misses")
        cpu = self.cpu.get(spec)
        self._make_room(cpu.nbytes, spec.name)
        adapter = self._upload(cpu)
        self.items.put(spec.key, adapter)
        return adapter

    def _make_room(self, nbytes: int, name: str) -> None:
        if nbytes > self.max_bytes:
            raise CapacityError(
                f"adapter {name} needs {nbytes / 2**20:.1f} MiB on the device, more than the "
                f"resident limit of {self.max_bytes / 2**20:.1f} MiB"
            )
        if not self.items.make_room(nbytes):
            raise CapacityError(
                f"no room to load adapter {name}: {len(self.items)} resident adapters "
                f"({self.nbytes} bytes) are all in use"
            )

    def _upload(self, cpu: CpuAdapter) -> ResidentAdapter:
        """Copy a CPU adapter into pooled device tensors and bind its layers."""
        entries = []
        for term in cpu.terms:
            module = self.index.get(term.name, cpu.name)
            a, b = self._copy(term.a, module, term, cpu.name, "a"), None
            if term.b is not None:
                b = self._copy(term.b, module, term, cpu.name, "b")
            conv = layers.conv_args(module, a) if term.kind == "lora" else None
            component = term.name.partition(".")[0]
            entries.append(
                ResidentEntry(
                    module, component, block_of(term.name), term.kind, a, b, term.scale, conv
                )
            )
        modules = list(dict.fromkeys(e.module for e in entries))
        components = frozenset(e.component for e in entries)
        return ResidentAdapter(cpu.key, cpu.name, entries, cpu.nbytes, components, modules)

    def _copy(self, src: Any, module: Any, term: CpuTerm, name: str, role: str) -> Any:
        """`src` (reshaped for the layer) copied into a pooled device tensor."""
        src = _fit(src, module, term, name, role)
        dest = self.pool.take(src)
        dest.copy_(src, non_blocking=True)
        return dest

    def evict(self, key: str) -> None:
        """Drop a resident adapter: unbind it, return its tensors to the pool."""
        self.items.evict(key)

    def _dropped(self, _key: str, adapter: ResidentAdapter) -> None:
        """Unbind an evicted adapter and recycle its tensors."""
        self.on_evict(adapter)
        for e in adapter.entries:
            self.pool.give(e.a)
            if e.b is not None:
                self.pool.give(e.b)
        adapter.entries.clear()
        self.metrics.inc("evictions_resident")

    def clear(self) -> None:
        """Evict everything (pins ignored: used when the pipeline goes away)."""
        for key in list(self.items):
            self.evict(key)
        gc.collect()


def _fit(src: Any, module: Any, term: CpuTerm, name: str, role: str) -> Any:
    """Reshape a down/up/ΔW tensor for `module` (linear LoRA on 1x1 convs), checking shapes."""
    import torch

    weight = module.weight
    is_conv = isinstance(module, torch.nn.Conv2d)
    if term.kind == "dense":
        if src.numel() != weight.numel():
            raise IncompatibleError(
                f"adapter {name}: {term.name} ΔW has shape {list(src.shape)}, layer {list(weight.shape)}"
            )
        return src.reshape(weight.shape)
    if is_conv and src.dim() == 2:
        src = src.reshape(*src.shape, 1, 1)
    if not is_conv and src.dim() == 4:
        src = src.flatten(1)
    if role == "a" and src.shape[1] != weight.shape[1]:
        raise IncompatibleError(
            f"adapter {name}: {term.name} expects {src.shape[1]} inputs, the layer has {weight.shape[1]}"
        )
    if role == "b" and src.shape[0] != weight.shape[0]:
        raise IncompatibleError(
            f"adapter {name}: {term.name} has {src.shape[0]} outputs, the layer has {weight.shape[0]}"
        )
    return src
