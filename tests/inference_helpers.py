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


def write_random_adapters(folder: Path) -> dict[str, Path]:
    """Three seeded random LoRAs for tiny-sd1 (r1 with text-encoder layers), a LoHa, a LoCon."""
    from lorahub.examples import ExampleAdapter, write_example_adapter

    out = {}
    for i, te in enumerate((False, True, False)):
        example = ExampleAdapter(f"r{i}", 4, 4.0, 20 + i, te)
        out[f"r{i}"] = write_example_adapter("tiny", folder / f"r{i}.safetensors", example, std=0.3)
    from lorahub.models import load_pipeline

    unet = load_pipeline("tiny", device="cpu", dtype="fp32").unet
    out["loha"] = write_loha(folder / "loha.safetensors", unet)
    out["locon"] = write_locon(folder / "locon.safetensors", unet)
    return out


def write_locon(path: Path, unet: Any) -> Path:
    """A kohya LoCon (low-rank conv LoRA) on the tiny-sd1 UNet's ResNet convs (3x3 down)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, module in unet.named_modules():
        if name.endswith(("resnets.0.conv1", "resnets.0.conv2")):
            out, inp, kh, kw = module.weight.shape
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(2, inp, kh, kw, generator=g) * 0.2
            tensors[f"{key}.lora_up.weight"] = torch.randn(out, 2, 1, 1, generator=g) * 0.2
            tensors[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path))
    return path


def write_loha(path: Path, unet: Any) -> Path:
    """A LyCORIS LoHa on a few tiny-sd1 UNet layers (held as dense ΔW by the engine)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for name, module in unet.named_modules():
        if name.endswith(("attn1.to_q", "ff.net.2")):
            out, inp = module.weight.shape
            key = "lora_unet_" + name.replace(".", "_")
            for w in ("w1", "w2"):
                tensors[f"{key}.hada_{w}_a"] = torch.randn(out, 2, generator=g) * 0.3
                tensors[f"{key}.hada_{w}_b"] = torch.randn(2, inp, generator=g) * 0.3
            tensors[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path))
    return path
