"""`lorahub grid`: the labelled X/Y grid on the tiny base; its cells equal single generate calls."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lorahub.types import MixMember
from tests.inference_helpers import pixels

ARGS = ["--steps", "2", "--size", "32x32"]


@pytest.fixture(scope="module")
def adapters(random_adapters) -> dict[str, Path]:
    return random_adapters


def _grid(*args: str):
    from lorahub.cli import main

    return CliRunner().invoke(main, ["grid", *args], catch_exceptions=False)


def _register(adapters) -> None:
    from lorahub.registry import Registry

    with Registry() as reg:
        reg.add_adapter(adapters["r0"], name="style")
        reg.add_adapter(adapters["r1"], name="light")
        reg.create_mix("soft", [MixMember("light", 0.7)])


def test_grid_cells_equal_single_generate_calls(adapters, tmp_path):
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.registry import Registry

    _register(adapters)
    out = tmp_path / "grid.png"
    res = _grid(
        "a red circle", "--adapter", "style", "--weights", "0,0.5,1",
        "--seeds", "1,2", "--prompt", "a blue square <lora:style:0.3>", "--mix", "soft",
        *ARGS, "-o", str(out), "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert Path(data["grid"]) == out and len(data["cells"]) == 12  # 2 prompts x 2 seeds x 3
    grid = Image.open(out)
    assert grid.size == (3 * 32 * 4, 14 + 4 * (32 * 4 + 14))  # labelled, cells enlarged 4x
    with Registry() as reg:
        style, light = reg.resolve_members([MixMember("style"), MixMember("light", 0.7)])
    cells = {(c["row"], c["column"]): c for c in data["cells"]}
    with Engine(base="tiny", device="cpu", dtype="fp32") as eng:
        for (row, col), cell in cells.items():
            # the mix's light, then the tags (the axis adapter's own tag gives way to the axis)
            prompt = "a red circle" if row < 2 else "a blue square"
            weight = (0.0, 0.5, 1.0)[col]
            req = GenerationRequest(
                prompt, adapters=(light, replace(style, weight=weight)), steps=2,
                seed=(1, 2)[row % 2], width=32, height=32, base="tiny",
            )  # fmt: skip
            alone = pixels(eng.generate(req).images[0])
            image = Image.open(cell["file"])
            assert np.abs(pixels(image.convert("RGB")) - alone).max() <= 1
            record = json.loads(image.text["lorahub"])
            assert record["seed"] == req.seed and record["prompt"] == prompt
            assert [a["weight"] for a in record["adapters"]][-1] == weight
    first, last = (pixels(Image.open(cells[(0, c)]["file"]).convert("RGB")) for c in (0, 2))
    assert np.abs(first - last).mean() > 5  # the weight axis changes the picture


@pytest.mark.parametrize(
    "args, message",
    [
        (["--weights", ""], "empty axis"),
        (["--weights", "0,,1"], "empty axis"),
        (["--weights", "0,half"], "'half' is not a number"),
        (["--seeds", "1,1.5"], "'1.5' is not a whole number"),
        (["--weights", "0,nan"], "weights must be finite"),
        (["--seeds", "1,-2"], "seeds must be between"),
        (["--seeds", ",".join(map(str, range(90)))], "more than 256"),
    ],
)
def test_bad_grid_input_is_one_clear_line(adapters, tmp_path, args, message):
    _register(adapters)
    out = tmp_path / "grid.png"
    res = _grid("a red circle", "--adapter", "style", *args, *ARGS, "-o", str(out))
    assert res.exit_code != 0
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not out.exists()
