"""The pipeline cache (keyed by base, dtype, device; size 1 by default), schedulers, families."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.errors import IncompatibleError, InvalidInputError
from lorahub.inference.lru import LRU
from lorahub.types import AdapterSpec

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpm++_sde": "DPMSolverSDEScheduler",
    "unipc": "UniPCMultistepScheduler",
    "ddpm": "DDPMScheduler",
}
A1111_SAMPLERS = {
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "UniPCMultistepScheduler": "UniPC",
    "DDPMScheduler": "DDPM",
}


def scheduler_class(name: str) -> str:
    """The diffusers class name for a scheduler name (short names or class names)."""
    if name in SCHEDULERS.values():
        return name
    cls = SCHEDULERS.get(name.lower())
    if cls is None:
        raise InvalidInputError(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")
    return cls


def make_scheduler(config: Any, name: str) -> Any:
    """A scheduler of class `name` built from a pipeline's scheduler config."""
    import diffusers

    return getattr(diffusers, scheduler_class(name)).from_config(config)


def pipeline_family(base: str, pipe: Any) -> str:
    """The family of a tiny id, else the family table's for the UNet's cross-attention width."""
    family = families.of_base_id(base)
    if family:
        return family
    dim = pipe.unet.config.cross_attention_dim
    return families.by_cross_width(dim) or f"unknown (cross-attention {dim})"


def base_family(base: str) -> str | None:
    """The family of a base from its id or its UNet config file, without loading weights."""
    from lorahub.tiny import resolve_base

    family = families.of_base_id(base)
    if family:
        return family
    config = Path(resolve_base(base)) / "unet" / "config.json"
    if not config.is_file():
        return None
    dim = json.loads(config.read_text()).get("cross_attention_dim")
    return families.by_cross_width(dim) if isinstance(dim, int) else None


UNKNOWN_FAMILIES = families.UNKNOWN_FAMILIES


def check_families(specs: Sequence[AdapterSpec], family: str | None, base: str) -> None:
    """IncompatibleError naming every adapter made for another family than `base`'s (unknown passes)."""
    if family in UNKNOWN_FAMILIES:
        return
    wrong = []
    for spec in specs:
        fam = families.canonical(spec.base_family) if spec.base_family else spec.base_family
        if fam not in UNKNOWN_FAMILIES and fam != family:
            wrong.append(f"{spec.name} is for {fam}")
    if wrong:
        raise IncompatibleError(f"adapter {', '.join(wrong)}, but base {base} is {family}")


def compile_unet(pipe: Any, backend: str = "inductor", mode: str | None = None) -> None:
    """Compile the UNet in place (slots must already be installed)."""
    pipe.unet.compile(backend=backend, mode=mode)


class PipelineCache:
    """LRU of loaded pipelines keyed by (base, dtype, device); `on_evict(value)` when dropped."""

    def __init__(self, size: int, load: Callable[[str], Any], on_evict: Callable[[Any], None]):
        self.size, self.load, self.on_evict = size, load, on_evict
        self.items: LRU[tuple, Any] = LRU(max_count=size, on_evict=self._dropped)

    def get(self, key: tuple) -> Any:
        """The cached value for `key`, loading (after evicting the oldest) when absent."""
        hit = self.items.get(key)
        if hit is not None:
            return hit
        self.items.make_room()
        value = self.load(key[0])
        self.items.put(key, value)
        return value

    def _dropped(self, _key: tuple, value: Any) -> None:
        self.on_evict(value)
        gc.collect()

    def values(self) -> list[Any]:
        return self.items.values()
