"""The embedded tiny bases: deterministic, loadable like any model, fast to sample."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lorahub.tiny import build_tiny, ensure_tiny, resolve_base


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_build_is_byte_identical(tiny_sd1, tmp_path):
    again = build_tiny("tiny-sd1", tmp_path / "again")
    assert _digest(again) == _digest(tiny_sd1)


def test_resolve_base_maps_tiny_ids_only(tiny_sd1):
    assert resolve_base("tiny") == str(tiny_sd1)
    assert resolve_base("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"
    with pytest.raises(Exception, match="unknown tiny model"):
        ensure_tiny("tiny-sd9")


def test_tiny_sd1_loads_with_from_pretrained_and_samples(tiny_sd1):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    assert pipe.unet.config.cross_attention_dim == 32
    ids = pipe.tokenizer("a red circle").input_ids
    assert len(set(ids)) > 3, "tokenizer must not map everything to one id"
    image = pipe(
        "a red circle", num_inference_steps=4, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (64, 64)


def test_tiny_sdxl_has_two_text_encoders_and_add_embedding(tiny_sdxl):
    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    assert pipe.unet.config.cross_attention_dim == 96
    assert pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size == 96
    assert pipe.unet.add_embedding is not None
    out = pipe(
        "a blue square",
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert out.images.shape == (1, 64, 64, 3)


def test_example_adapters_load_in_plain_diffusers_and_change_output(tiny_sd1, example_adapters):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)

    def run():
        g = torch.Generator().manual_seed(0)
        return pipe("a red circle", num_inference_steps=3, generator=g, output_type="np").images

    before = run()
    pipe.load_lora_weights(str(example_adapters["example-light"]))
    after = run()
    assert abs(after - before).mean() > 1e-4
