"""One loaded base: its pipeline, resident adapters, activator, fuser; runs one request at a time."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

from lorahub.errors import InvalidInputError
from lorahub.inference import hotswap, pipelines
from lorahub.inference.activate import Activator, selections_for
from lorahub.inference.adapters import (
    BufferPool,
    CpuCache,
    ModuleIndex,
    ResidentAdapter,
    ResidentCache,
)
from lorahub.inference.fuse import Fuser
from lorahub.inference.requests import GenerationRequest, GenerationResult
from lorahub.metrics import EngineMetrics
from lorahub.types import AdapterSpec


class BaseRuntime:
    """A pipeline with its adapter state; not thread-safe (the engine serialises calls)."""

    def __init__(self, base: str, pipe: Any, config: Any, cpu: CpuCache, metrics: EngineMetrics):
        self.base, self.pipe, self.config, self.cpu, self.metrics = base, pipe, config, cpu, metrics
        self.family = pipelines.pipeline_family(base, pipe)
        self.index = ModuleIndex(pipe)
        self.pool = BufferPool(pipe.device, config.max_resident_bytes)
        self.resident = ResidentCache(
            self.index,
            cpu,
            self.pool,
            metrics,
            max_count=config.max_resident,
            max_bytes=config.max_resident_bytes,
            on_evict=self._on_evict,
        )
        self.activator: Any = Activator()
        self.fuser = Fuser()
        self.hot_count = 0
        self.default_scheduler = pipe.scheduler
        _text_model_alias(pipe)
        self.schedulers: dict[str, Any] = {}
        if config.compile:
            self._setup_compile()
        if config.freeze_gc:
            gc.collect()
            gc.freeze()

    def _setup_compile(self) -> None:
        """Plan slots from the configured adapters, install them, compile the UNet."""
        specs = list(self.config.slot_adapters)
        for spec in specs:
            hotswap.check_spec(spec)
        targets, rank = hotswap.plan_slots([self.cpu.get(s) for s in specs])
        rank = max(rank, self.config.slot_rank or 0)
        if not targets or not rank:
            raise InvalidInputError(
                "compiled mode needs the adapters to plan its slots (slot_adapters)"
            )
        self.activator = hotswap.SlotActivator(self.index, targets, rank)
        pipelines.compile_unet(self.pipe, self.config.compile_backend, self.config.compile_mode)

    def _on_evict(self, adapter: ResidentAdapter) -> None:
        if self.fuser.fused and adapter.key in self.activator.keys:
            self.fuser.unfuse()
        self.activator.forget(adapter)

    def run(self, request: GenerationRequest) -> GenerationResult:
        """Activate the request's adapters, sample, return images and the record."""
        specs = list(request.adapters)
        self.check(request)
        start = time.perf_counter()
        adapters = self.resident.acquire(specs)
        try:
            swap_s = self._switch(specs, adapters, start)
            t0 = time.perf_counter()
            images = self._sample(request)
            gen_s = time.perf_counter() - t0
        finally:
            self.resident.release(adapters)
        self.metrics.observe("generation_seconds", gen_s)
        return GenerationResult(images, self._record(request, images, swap_s, gen_s))

    def check(self, request: GenerationRequest) -> None:
        """Refuse a request this base cannot run, before anything is loaded."""
        self.check_clip_skip(request.clip_skip)
        pipelines.check_families(list(request.adapters), self.family, self.base)
        if self.config.compile:
            for spec in request.adapters:
                hotswap.check_spec(spec)

    @contextlib.contextmanager
    def use(self, specs: list[AdapterSpec]) -> Iterator[list[ResidentAdapter]]:
        """Make `specs` the active set (their weights as given) for a block of work outside
        `run` (a weight search scoring mixes), pinned meanwhile."""
        pipelines.check_families(specs, self.family, self.base)
        adapters = self.resident.acquire(specs)
        try:
            self._switch(specs, adapters, time.perf_counter())
            yield adapters
        finally:
            self.resident.release(adapters)

    def check_clip_skip(self, clip_skip: int | None) -> None:
        """clip_skip must leave a layer of every text encoder (diffusers indexes past it otherwise)."""
        if not clip_skip:
            return
        depths = [
            int(te.config.num_hidden_layers)
            for te in (
                getattr(self.pipe, "text_encoder", None),
                getattr(self.pipe, "text_encoder_2", None),
            )
            if te is not None and hasattr(te, "config")
        ]
        if depths and clip_skip >= min(depths):
            raise InvalidInputError(
                f"clip_skip {clip_skip} is too large for {self.base}: its text encoder has "
                f"{min(depths)} layers, so clip_skip must be at most {min(depths) - 1}"
            )

    def _switch(
        self, specs: list[AdapterSpec], adapters: list[ResidentAdapter], start: float
    ) -> float:
        """Make the request's set active (unfusing/fusing as configured); the swap seconds."""
        selections = selections_for(specs, adapters)
        signature = tuple(s.signature for s in selections)
        if self.fuser.fused and self.fuser.signature != signature:
            self.fuser.unfuse()
        changed = self.activator.activate(selections)
        self.hot_count = 1 if changed else self.hot_count + 1
        fuse_after = self.config.fuse_after
        if fuse_after and selections and not self.config.compile and not self.fuser.fused:
            if self.hot_count >= fuse_after and self.fuser.fuse(
                self.activator.active_terms(), signature
            ):
                self.metrics.inc("fuses")
        swap_s = time.perf_counter() - start
        if changed:
            self.metrics.inc("swaps")
            self.metrics.observe("swap_seconds", swap_s)
        return swap_s

    def _scheduler(self, name: str | None) -> Any:
        if name is None:
            return self.default_scheduler
        cls = pipelines.scheduler_class(name)
        if cls not in self.schedulers:
            self.schedulers[cls] = pipelines.make_scheduler(self.default_scheduler.config, cls)
        return self.schedulers[cls]

    def _sample(self, req: GenerationRequest) -> list[Any]:
        """Run the pipeline with one CPU generator per image (seed + i): queue-independent."""
        import torch

        self.pipe.scheduler = self._scheduler(req.scheduler)
        kwargs: dict[str, Any] = {
            "prompt": [req.prompt] * req.n,
            "negative_prompt": [req.negative_prompt] * req.n if req.negative_prompt else None,
            "num_inference_steps": req.steps,
            "guidance_scale": req.guidance,
            "generator": [torch.Generator("cpu").manual_seed(req.seed + i) for i in range(req.n)],
            "width": req.width,
            "height": req.height,
            "output_type": "pil",
        }
        if req.clip_skip:
            kwargs["clip_skip"] = req.clip_skip
        with torch.inference_mode():
            return list(self.pipe(**kwargs).images)

    def _record(
        self, req: GenerationRequest, images: list[Any], swap_s: float, gen_s: float
    ) -> dict[str, Any]:
        """What the PNG text chunks and `--json` carry."""
        width, height = images[0].size
        return {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt,
            "seed": req.seed,
            "seeds": [req.seed + i for i in range(req.n)],
            "steps": req.steps,
            "guidance": req.guidance,
            "width": width,
            "height": height,
            "n": req.n,
            "base": self.base,
            "base_family": self.family,
            "scheduler": type(self.pipe.scheduler).__name__,
            "clip_skip": req.clip_skip,
            "adapters": [s.to_json() for s in req.adapters],
            "timings": {"swap_s": round(swap_s, 6), "generate_s": round(gen_s, 4)},
        }

    def close(self) -> None:
        """Drop resident adapters and compiled state."""
        if self.fuser.fused:
            self.fuser.unfuse()
        self.activator.activate([])
        self.resident.clear()

    def status(self) -> dict[str, Any]:
        """Resident adapters (LRU order) and what is active."""
        return {
            "base": self.base,
            "family": self.family,
            "device": str(self.pipe.device),
            "dtype": str(self.pipe.unet.dtype).replace("torch.", ""),
            "compiled": bool(self.config.compile),
            "fused": self.fuser.fused,
            "resident": [
                {
                    "name": a.name,
                    "key": a.key,
                    "bytes": a.nbytes,
                    "active": a.key in self.activator.keys,
                }
                for a in list(self.resident.items.values())
            ],
            "resident_bytes": self.resident.nbytes,
        }


def _text_model_alias(pipe: Any) -> None:
    """diffusers' SD1 clip_skip reads `text_encoder.text_model`, gone in transformers 5: alias it."""
    for attr in ("text_encoder", "text_encoder_2"):
        te = getattr(pipe, attr, None)
        if te is not None and not hasattr(te, "text_model") and hasattr(te, "final_layer_norm"):
            object.__setattr__(te, "text_model", te)  # plain attribute: not a registered child
