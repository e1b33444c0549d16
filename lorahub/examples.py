"""Example adapters for the tiny bases: real LoRA files, written the way diffusers writes them.

They are made with peft on the tiny pipeline's UNet (and optionally its text encoder), with
seeded non-zero weights so they visibly change the output, and saved with diffusers'
`save_lora_weights` (plus the LoRA config, so alpha survives a plain diffusers load).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_path

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True)
class ExampleAdapter:
    """What the demo writes: a name, a rank, alpha, a seed and whether it touches the text encoder."""

    name: str
    rank: int
    alpha: float
    seed: int
    text_encoder: bool = False
    description: str = ""
    trigger_words: tuple[str, ...] = ()


DEMO_ADAPTERS = (
    ExampleAdapter(
        "example-style", 4, 4.0, 1, False, "A random UNet LoRA (rank 4).", ("stylized",)
    ),
    ExampleAdapter(
        "example-light",
        8,
        4.0,
        2,
        True,
        "A random UNet + text-encoder LoRA (rank 8, alpha 4).",
        ("glow",),
    ),
)


def write_example_adapter(
    base: str, dest: str | Path, spec: ExampleAdapter, *, std: float = 0.05
) -> Path:
    """Write a seeded random LoRA for `base` (a tiny id or pipeline folder) to `dest` (a .safetensors file)."""
    from lorahub.models import load_pipeline

    pipe = load_pipeline(base, device="cpu", dtype="fp32")
    layers, metadata = {}, {}
    layers["unet_lora_layers"], metadata["unet_lora_adapter_metadata"] = _random_lora(
        pipe.unet, UNET_TARGETS, spec, std, spec.seed
    )
    if spec.text_encoder:
        for i, attr in enumerate(("text_encoder", "text_encoder_2")):
            if getattr(pipe, attr, None) is not None:
                sd, cfg = _random_lora(
                    getattr(pipe, attr), TE_TARGETS, spec, std, spec.seed + 100 + i
                )
                layers[f"{attr}_lora_layers"], metadata[f"{attr}_lora_adapter_metadata"] = sd, cfg
    dest = Path(dest)
    with atomic_path(dest, suffix=".safetensors") as tmp:
        type(pipe).save_lora_weights(tmp.parent, weight_name=tmp.name, **layers, **metadata)
        _sort_header(tmp)
    return dest


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys: the writer's key order is not stable, and
    the demo's files (and so their sha256 in `registry.db.example`) should be byte-identical."""
    import json
    import struct

    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])


def _random_lora(
    model: Any, targets: tuple[str, ...], spec: ExampleAdapter, std: float, seed: int
) -> tuple[dict, dict]:
    """Attach a peft LoRA to `model`, fill it with seeded noise, return (state dict, LoRA config)."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(targets),
        init_lora_weights="gaussian",
    )
    model.add_adapter(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    state = get_peft_model_state_dict(model)
    meta = {**config.to_dict(), "base_model_name_or_path": None}  # not the local cache path
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(meta.get(key), set | frozenset):  # peft keeps sets: hash-seed order
            meta[key] = sorted(meta[key])
    return state, meta
