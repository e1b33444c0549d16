"""Pure parts of the engine: prompt tags, request checks, PNG text, metrics, output names."""

from __future__ import annotations

import pytest

from lorahub.errors import InvalidInputError
from lorahub.inference.png import a1111_parameters, output_paths, png_text
from lorahub.inference.requests import GenerationRequest, parse_prompt_tags
from lorahub.types import AdapterSpec, MixMember


def test_prompt_tags():
    prompt, members = parse_prompt_tags(
        "a <lora:style:0.8> castle, <lora:light> at night <LORA:x:0.5:1.2>"
    )
    assert prompt == "a castle, at night"
    assert members == [
        MixMember("style", 0.8),
        MixMember("light", 1.0),
        MixMember("x", 1.2, te_weight=0.5),
    ]
    assert parse_prompt_tags("<lora:a:te=0.2:unet=0.9>")[1] == [MixMember("a", 0.9, te_weight=0.2)]
    assert parse_prompt_tags("no tags here") == ("no tags here", [])
    with pytest.raises(InvalidInputError, match="invalid weight"):
        parse_prompt_tags("<lora:a:lots>")
    with pytest.raises(InvalidInputError):
        parse_prompt_tags("<lora:bad name:1>")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"steps": 0}, "steps"),
        ({"n": 99}, "n must"),
        ({"width": 33}, "multiple of 8"),
        ({"seed": -1}, "seed"),
        ({"adapters": [AdapterSpec("a", "p", "k"), AdapterSpec("a", "p", "k")]}, "listed twice"),
    ],
)
def test_request_validation(kw, message):
    with pytest.raises(InvalidInputError, match=message):
        GenerationRequest("x", **kw).validate()


def _record():
    return {
        "prompt": "a castle",
        "negative_prompt": "blurry",
        "seed": 5,
        "seeds": [5, 6],
        "steps": 20,
        "guidance": 7.5,
        "width": 512,
        "height": 512,
        "base": "tiny",
        "scheduler": "EulerAncestralDiscreteScheduler",
        "clip_skip": 2,
        "adapters": [
            {"name": "style", "weight": 0.8, "hash": "aabbccddeeff"},
            {"name": "light", "weight": 0.4, "hash": None},
        ],
    }


def test_a1111_parameters():
    text = a1111_parameters(_record(), 1)
    assert text.splitlines() == [
        "a castle <lora:style:0.8> <lora:light:0.4>",
        "Negative prompt: blurry",
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 6, Size: 512x512, Model: tiny, "
        'Clip skip: 2, Lora hashes: "style: aabbccddeeff"',
    ]
    chunks = png_text(_record(), 0)
    assert (
        chunks["seed"] == "5"
        and chunks["size"] == "512x512"
        and chunks["negative_prompt"] == "blurry"
    )


def test_output_paths(tmp_path):
    assert output_paths(tmp_path / "a.png", 1) == [tmp_path / "a.png"]
    assert output_paths(tmp_path / "a.png", 2) == [tmp_path / "a-000.png", tmp_path / "a-001.png"]


def test_histogram_is_cumulative():
    from lorahub.metrics import EngineMetrics

    m = EngineMetrics()
    for s in (0.0002, 0.003, 5.0):
        m.observe("swap_seconds", s)
    hist = m.to_json()["swap_seconds"]
    assert hist["count"] == 3 and hist["buckets"][-1] == ["+Inf", 3]
    assert dict((str(b), c) for b, c in hist["buckets"])["0.005"] == 2


@pytest.mark.parametrize(
    "fname, kind",
    [
        pytest.param(
            "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors", "dense", marks=pytest.mark.slow
        ),
        ("sd15_cloneofsimo_r4_analog-svd.safetensors", None),
        ("sd15_diffusers-attnproc_r4_catundchat.safetensors", "lora"),
        ("sd15-te_peft_r8_hansjohn819.safetensors", "lora"),
    ],
)
def test_real_files_read_as_owned_terms(fixtures_dir, fname, kind):
    """Real-world formats become canonical terms in memory the engine owns (no file views)."""
    import torch

    from lorahub.errors import UnsupportedError
    from lorahub.inference.sources import read_terms

    if kind is None:  # positional format: formats cannot name its modules
        with pytest.raises(UnsupportedError, match="cloneofsimo"):
            read_terms(str(fixtures_dir / fname), torch.float32)
        return
    terms = read_terms(str(fixtures_dir / fname), torch.float32)
    assert terms and {t.kind for t in terms} == {kind}
    assert all(t.name.split(".", 1)[0] in ("unet", "text_encoder") for t in terms)
    for t in terms[:5]:
        assert t.a.is_contiguous() and t.a.dtype == torch.float32
        assert t.scale > 0
