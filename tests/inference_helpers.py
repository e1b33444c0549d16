"""Shared helpers for the inference tests: specs for the example adapters, reference runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PROMPT = "a castle on a hill"
STEPS = 2
SIZE = 32


def spec(path: Path, name: str | None = None, **kw: Any):
    """An AdapterSpec for a file (key = path + mtime, as the registry does without hashes)."""
    from lorahub.types import AdapterSpec

    st = path.stat()
    return AdapterSpec(name=name or path.stem, path=str(path), key=f"{path}:{st.st_mtime_ns}", **kw)


def request(adapters=(), seed: int = 7, **kw: Any):
    from lorahub.inference import GenerationRequest

    kw.setdefault("width", SIZE)
    kw.setdefault("height", SIZE)
    return GenerationRequest(PROMPT, adapters=list(adapters), steps=STEPS, seed=seed, **kw)


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def diffusers_image(adapters: list[tuple[Path, Any]], seed: int = 7) -> np.ndarray:
    """The same request on a fresh pipeline with plain load_lora_weights + set_adapters."""
    import torch

    from lorahub.models import load_pipeline

    pipe = load_pipeline("tiny", device="cpu", dtype="fp32")
    names = [f"a{i}" for i in range(len(adapters))]
    for name, (path, _) in zip(names, adapters, strict=True):
        pipe.load_lora_weights(str(path), adapter_name=name)
    if adapters:
        pipe.set_adapters(names, [w for _, w in adapters])
    out = pipe(
        PROMPT,
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        width=SIZE,
        height=SIZE,
        generator=[torch.Generator("cpu").manual_seed(seed)],
    )
    return pixels(out.images[0])
