"""Kohya names of SDXL text-encoder LoRAs: the family decides `lora_te1_`/`lora_te2_` (A1111
matches nothing else on an SDXL model), whatever subset of the encoders a file covers; and a
text-encoder-only file whose shapes fit several families is placed by its metadata."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lorahub.formats import inspect_file, open_adapter, write_adapter
from tests.test_formats_roundtrip import _apply, _layers, _lora, _te_out, _unet_out

TE_LEAVES = ("q_proj", "k_proj", "v_proj", "out_proj")
CASES = {
    "te1": ("text_encoder",),
    "te2": ("text_encoder_2",),
    "unet+te1": ("unet", "text_encoder"),
}


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)


def _subset_modules(pipe, components):
    gen = torch.Generator().manual_seed(0)
    layers = []
    for comp in components:
        leaves = ("to_q", "to_k", "to_v", "to_out.0") if comp == "unet" else TE_LEAVES
        layers += _layers(getattr(pipe, comp), comp, leaves)
    return [(n, _lora(layer, alpha=2.0, gen=gen)) for n, layer in layers]


def _keys(path):
    with safe_open(str(path), "pt") as f:
        return set(f.keys()), f.metadata() or {}


def _prefixes(keys):
    return {k.split("text_model")[0] for k in keys if k.startswith("lora_te")}


@pytest.mark.parametrize("case", CASES)
def test_sdxl_kohya_export_uses_the_family_prefixes(sdxl, tiny_sdxl, tmp_path, case):
    from diffusers import StableDiffusionXLPipeline

    modules = _subset_modules(sdxl, CASES[case])
    path = write_adapter(
        modules, tmp_path / f"{case}.safetensors", format="kohya", base_family="tiny-sdxl"
    )
    keys, _ = _keys(path)
    expected = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
    assert _prefixes(keys) == {expected[c] for c in CASES[case] if c != "unet"}
    assert not any(k.startswith("lora_te_") for k in keys)
    info = inspect_file(path)
    assert info.base_family == "tiny-sdxl"
    assert set(info.components) == set(CASES[case])

    # plain diffusers loads it on the tiny SDXL with the source's text-encoder output
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    manual = _apply(pipe, modules)
    pipe.load_lora_weights(str(path))
    for comp in ("text_encoder", "text_encoder_2"):
        out, want = _te_out(getattr(pipe, comp)), _te_out(manual[comp])
        assert torch.allclose(out, want, atol=1e-4), comp
        changed = not torch.allclose(want, _te_out(getattr(sdxl, comp)), atol=1e-3)
        assert changed == (comp in CASES[case]), comp
    assert torch.allclose(_unet_out(pipe.unet, 96), _unet_out(manual["unet"], 96), atol=1e-4)

    # kohya -> diffusers -> kohya keeps the names
    with open_adapter(path) as reader:
        back = write_adapter(reader.modules(), tmp_path / "d.safetensors", base_family="tiny-sdxl")
    with open_adapter(back) as reader:
        again = write_adapter(
            reader.modules(),
            tmp_path / "k2.safetensors",
            format="kohya",
            base_family=inspect_file(back).base_family,
        )
    assert _keys(again)[0] == keys


def _clip_l_peft_dir(tmp_path, base_model):
    """A PEFT text-encoder LoRA on a 768-wide CLIP-L (SD1's encoder and SDXL's first one)."""
    folder = tmp_path / "te-peft"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(2):
        for proj in ("q_proj", "v_proj"):
            stem = f"base_model.model.text_model.encoder.layers.{layer}.self_attn.{proj}"
            tensors[f"{stem}.lora_A.weight"] = torch.randn(4, 768, generator=gen) * 0.01
            tensors[f"{stem}.lora_B.weight"] = torch.randn(768, 4, generator=gen) * 0.01
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 4,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": base_model,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_clip_l_only_adapter_is_placed_by_its_config(tmp_path):
    from lorahub.ops.export import export_adapter

    folder = _clip_l_peft_dir(tmp_path, "stabilityai/stable-diffusion-xl-base-1.0")
    info = inspect_file(folder)
    assert info.base_family == "sdxl"
    assert info.base_conflict is None
    assert any("cannot tell" in line for line in info.base_evidence), info.base_evidence
    export_adapter(folder, tmp_path / "k.safetensors", format="kohya")
    keys, meta = _keys(tmp_path / "k.safetensors")
    assert _prefixes(keys) == {"lora_te1_"}
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert inspect_file(tmp_path / "k.safetensors").base_family == "sdxl"


def test_clip_l_only_adapter_without_a_word_stays_sd1(tmp_path):
    folder = _clip_l_peft_dir(tmp_path, "/models/some-finetune")
    info = inspect_file(folder)
    assert info.base_family == "sd1"
    assert any("cannot tell" in line for line in info.base_evidence)
    write_adapter(
        open_adapter(folder).modules(),
        tmp_path / "k.safetensors",
        format="kohya",
        base_family=info.base_family,
    )
    assert _prefixes(_keys(tmp_path / "k.safetensors")[0]) == {"lora_te_"}


def test_push_also_kohya_of_an_sdxl_te1_adapter(tmp_path, tiny_sdxl, sdxl):
    from lorahub.hub.push import write_weights
    from lorahub.registry import Registry

    modules = _subset_modules(sdxl, ("text_encoder",))
    src = write_adapter(modules, tmp_path / "te1.safetensors", base_family="tiny-sdxl")
    with Registry() as reg:
        (record,) = reg.add_path(src)
        assert record.base_family == "tiny-sdxl"
        out = write_weights(record, tmp_path / "pushed.safetensors", "kohya")
    assert _prefixes(_keys(out)[0]) == {"lora_te1_"}
