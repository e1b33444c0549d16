"""`lorahub generate` end to end: registry names, mixes, prompt tags, PNG text, family checks."""

from __future__ import annotations

import json
import os

import numpy as np
from click.testing import CliRunner
from PIL import Image

from tests.inference_helpers import pixels, request, spec

ARGS = ["--steps", "2", "--size", "32x32", "--seed", "7"]


def _register(example_adapters):
    from lorahub.registry import Registry

    reg = Registry()
    style = reg.add_adapter(example_adapters["example-style"], name="style")
    light = reg.add_adapter(example_adapters["example-light"], name="light")
    reg.close()
    return style, light


def _run(*args: str):
    from lorahub.cli import main

    result = CliRunner().invoke(main, ["generate", *args], catch_exceptions=False)
    return result


def test_generate_writes_pngs_with_records(example_adapters, tmp_path):
    from lorahub.inference import Engine

    _register(example_adapters)
    out = tmp_path / "castle.png"
    res = _run(
        "a castle on a hill <lora:light:0.5>",
        "-a",
        "style:0.7",
        *ARGS,
        "-n",
        "2",
        "-o",
        str(out),
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    files = [tmp_path / "castle-000.png", tmp_path / "castle-001.png"]
    assert data["files"] == [str(f) for f in files] and all(f.exists() for f in files)
    umask = os.umask(0o022)
    os.umask(umask)
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in files)  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    record = data["record"]
    assert record["prompt"] == "a castle on a hill" and record["seeds"] == [7, 8]
    assert [(a["name"], a["weight"]) for a in record["adapters"]] == [
        ("style", 0.7),
        ("light", 0.5),
    ]
    hashes = [a["hash"] for a in record["adapters"]]
    assert all(h and len(h) == 12 for h in hashes)
    text = Image.open(files[1]).text
    assert f'Lora hashes: "style: {hashes[0]}, light: {hashes[1]}"' in text["parameters"]
    assert (
        "<lora:style:0.7> <lora:light:0.5>" in text["parameters"]
        and "Seed: 8" in text["parameters"]
    )
    assert text["seed"] == "8" and text["steps"] == "2" and text["base"] == "tiny"
    assert json.loads(text["adapters"])[0]["hash"] == hashes[0]
    mix = [
        spec(example_adapters["example-style"], weight=0.7),
        spec(example_adapters["example-light"], weight=0.5),
    ]
    with Engine(base="tiny", device="cpu", dtype="fp32") as eng:
        direct = eng.generate(request(mix, n=2))
    assert np.array_equal(pixels(Image.open(files[0]).convert("RGB")), pixels(direct.images[0]))


def test_generate_with_a_mix(example_adapters, tmp_path):
    from lorahub.registry import Registry
    from lorahub.types import MixMember

    _register(example_adapters)
    reg = Registry()
    reg.create_mix("duo", [MixMember("style", 0.6), MixMember("light", 0.4)])
    reg.close()
    out = tmp_path / "mix.png"
    res = _run("a castle", "--mix", "duo", *ARGS, "-o", str(out), "--json")
    assert res.exit_code == 0, res.output
    names = [(a["name"], a["weight"]) for a in json.loads(res.output)["record"]["adapters"]]
    assert names == [("style", 0.6), ("light", 0.4)] and out.exists()


def test_generate_refuses_another_family_and_unknown_names(example_adapters, tmp_path):
    _register(example_adapters)
    res = _run("x", "-a", "style", "--base", "tiny-sdxl", *ARGS, "-o", str(tmp_path / "a.png"))
    assert res.exit_code == 1
    assert "style is for tiny-sd1, but base tiny-sdxl is tiny-sdxl" in res.output
    res = _run("x", "-a", "nobody", *ARGS, "-o", str(tmp_path / "b.png"))
    assert res.exit_code == 1 and "nobody" in res.output
    res = _run("x", "--size", "big", "-o", str(tmp_path / "c.png"))
    assert res.exit_code == 1 and "invalid --size" in res.output
    res = _run("x", *ARGS, "-o", str(tmp_path / "dir") + "/")
    assert res.exit_code == 1 and "give a file name" in res.output
    res = _run("x", "--base", str(tmp_path / "no-such-base"), *ARGS, "-o", str(tmp_path / "d.png"))
    assert res.exit_code == 1 and "cannot load base model" in res.output
    res = _run("x", "--device", "gpu", *ARGS, "-o", str(tmp_path / "e.png"))
    assert res.exit_code == 1 and "unknown device 'gpu'" in res.output
    import torch

    if not torch.cuda.is_available():
        res = _run("x", "--device", "cuda", *ARGS, "-o", str(tmp_path / "f.png"))
        assert res.exit_code == 1 and "CUDA is not available" in res.output
    assert not list(tmp_path.glob("*.png"))
