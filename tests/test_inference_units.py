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
    from lorahub.inference.metrics import Metrics

    m = Metrics()
    for s in (0.0002, 0.003, 5.0):
        m.observe("swap_seconds", s)
    hist = m.to_json()["swap_seconds"]
    assert hist["count"] == 3 and hist["buckets"][-1] == ["+Inf", 3]
    assert dict((str(b), c) for b, c in hist["buckets"])["0.005"] == 2
