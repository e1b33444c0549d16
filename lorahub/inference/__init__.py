"""lorahub.inference: the engine (pipeline cache, two-tier adapter cache, hot-swap, mixes).

Never imports the registry: callers pass resolved `AdapterSpec`s. Importing this package does
not import torch; the submodules that need it do.
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
