"""lorahub.inference: the engine (pipeline cache, two-tier adapter cache, hot-swap, mixes).

Never imports the registry: callers pass resolved `AdapterSpec`s. Importing this package does
not import torch; the submodules that need it do.

Public API (stable):
    engine = Engine(base="tiny", device=None, dtype=None, compile=False, max_queue=64,
                    max_resident=16, cpu_cache_bytes=..., fuse_after=None, slot_adapters=())
    engine.generate(GenerationRequest(prompt, adapters=[AdapterSpec...], steps=.., seed=..))
        -> GenerationResult(images: list[PIL.Image], record: dict)   # inline, or via the worker
    engine.generate_batch([request, ...]) -> [GenerationResult]  # shared denoising loops,
        # whatever each request's adapters; engine.run_batch(...) -> results or their errors
    engine.submit(request) -> concurrent.futures.Future   # CapacityError when the queue is full
        # (with batch_window_ms, the worker gathers compatible queued requests into one loop)
    engine.start() / engine.close(); engine.stats() / engine.status() -> dict
    engine.family(base=None) -> str; pipelines.base_family(base) -> str | None (no load)
    parse_prompt_tags(prompt) -> (clean_prompt, list[MixMember])
    png.save_png(images, record, dest) -> list[Path]; png.png_bytes(image, record, i) -> bytes
    compare.plan_grid(...) / compare.render_grid(plan, output) -> GridResult  # `lorahub grid`
Errors: InvalidInputError (bad request), IncompatibleError (family/shape), CapacityError (queue
full or adapters do not fit), UnsupportedError (DoRA; TE/LyCORIS when compiled), NotFoundError.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Engine",
    "EngineConfig",
    "GenerationRequest",
    "GenerationResult",
    "parse_prompt_tags",
    "save_png",
    "png_text",
    "a1111_parameters",
]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "EngineConfig"):
        from lorahub.inference import engine

        return getattr(engine, name)
    if name in ("GenerationRequest", "GenerationResult", "parse_prompt_tags"):
        from lorahub.inference import requests

        return getattr(requests, name)
    if name in ("save_png", "png_text", "a1111_parameters"):
        from lorahub.inference import png

        return getattr(png, name)
    raise AttributeError(name)
