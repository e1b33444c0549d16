"""`lorahub mix search`: the weights found for purple squares on a dark background beat uniform
weights and each adapter alone on held-out pictures, draw purple, and come out the same twice;
bad input is refused in one line, before any model is loaded, with nothing saved."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from lorahub.cli import main
from lorahub.registry import Registry
from lorahub.training.demo import caption, draw_scene

pytestmark = pytest.mark.usefixtures("one_thread")
ADAPTERS = ("demo-shapes", "example-dark", "example-light")  # purple, dark background, pastels
PROMPT = "a purple square"
PURPLE_AIM = 0.8


def scenes(folder: Path, seed: int, count: int, captions: bool = True) -> Path:
    """`count` purple squares on a dark background drawn by the synthetic world (+ captions)."""
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(count):
        draw_scene("square", "purple", 64, rng, background="dark").save(folder / f"{i:02d}.png")
        if captions:
            (folder / f"{i:02d}.txt").write_text(caption("purple", "square"))
    return folder


@pytest.fixture(scope="module")
def adapter_files(demo_shapes, example_adapters, tmp_path_factory) -> dict[str, Path]:
    """demo-shapes and example-light from the session, example-dark trained once (cached)."""
    from lorahub.examples import DARK_EXAMPLE, write_example_adapter

    with Registry(demo_shapes / "registry.db") as reg:
        shapes = Path(reg.get_adapter("demo-shapes").path)
    folder = tmp_path_factory.mktemp("search-adapters")
    dark = write_example_adapter("tiny", folder / "example-dark.safetensors", DARK_EXAMPLE)
    return {"demo-shapes": shapes, "example-dark": dark, "example-light": example_adapters["example-light"]}  # fmt: skip


@pytest.fixture
def reg(adapter_files):
    registry = Registry()
    for name, path in adapter_files.items():
        registry.add_adapter(path, name=name)
    yield registry
    registry.close()


def purple_share(engine, specs, weights, n: int = 10) -> float:
    """Share of `n` pictures of PROMPT with the adapters at `weights` that the judge calls purple."""
    from dataclasses import replace

    from lorahub.inference import GenerationRequest
    from lorahub.judge import share_of

    adapters = [replace(s, weight=w) for s, w in zip(specs, weights, strict=True)]
    request = GenerationRequest(PROMPT, adapters=adapters, n=n, seed=100)
    return share_of(engine.generate(request).images, "purple")


def test_search_beats_uniform_and_each_alone_on_held_out_pictures(reg, tmp_path):
    from lorahub.inference import Engine
    from lorahub.library.search import read_examples
    from lorahub.ops.search import MixScorer, search_weights
    from lorahub.types import MixMember

    examples = scenes(tmp_path / "examples", seed=1, count=4)
    args = [a for name in ADAPTERS for a in ("--adapter", name)]
    done = CliRunner().invoke(main, ["mix", "search", "purple-dark", *args, "--images", str(examples), "--json"])  # fmt: skip
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    weights = [found["weights"][name] for name in ADAPTERS]
    assert found["evaluations"] <= 40 and found["seconds"] < 120, found
    mix = reg.get_mix("purple-dark")
    assert [m.weight for m in mix.members] == weights and mix.defaults["prompt"] == PROMPT
    assert mix.details["search"]["weights"] == found["weights"]
    assert mix.details["search"]["uniform_loss"] == found["uniform_loss"]

    specs = reg.resolve_members([MixMember(name) for name in ADAPTERS])
    uniform = [round(1 / 3, 3)] * 3
    alone = [[1.0 if j == i else 0.0 for j in range(3)] for i in range(3)]
    with Engine(base="tiny") as engine:
        runtime = engine.runtime()
        again = search_weights(MixScorer(runtime, specs, read_examples(examples, None)))
        assert list(again.weights) == weights  # deterministic for a seed
        held_out = read_examples(scenes(tmp_path / "held-out", seed=2, count=8), None)
        scorer = MixScorer(runtime, specs, held_out, seed=1, timesteps=8)
        losses = {"best": scorer.loss(weights), "uniform": scorer.loss(uniform)}
        losses |= {name: scorer.loss(w) for name, w in zip(ADAPTERS, alone, strict=True)}
        purple = {"best": purple_share(engine, specs, weights),
                  "uniform": purple_share(engine, specs, uniform)}  # fmt: skip
    print(f"weights {found['weights']} held-out {losses} purple {purple} {found['seconds']:.1f} s")
    assert losses["best"] < min(v for k, v in losses.items() if k != "best"), losses
    assert purple["best"] >= PURPLE_AIM > purple["uniform"], purple


REFUSALS = textwrap.dedent(
    """
    import json, sys
    from click.testing import CliRunner
    from lorahub.cli import main
    r = CliRunner()
    out = []
    for args in json.loads(sys.argv[1]):
        done = r.invoke(main, ["mix", "search", "m", *args])
        out.append([done.exit_code, done.output.strip()])
    listed = json.loads(r.invoke(main, ["mix", "list", "--json"]).output)
    heavy = [m for m in ("torch", "diffusers", "nevergrad") if m in sys.modules]
    print(json.dumps({"out": out, "mixes": listed, "heavy": heavy}))
    """
)


def tiny_lora(path: Path, width: int) -> Path:
    """A one-module kohya LoRA whose cross-attention input width names its family."""
    import numpy as np
    from safetensors.numpy import save_file

    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    rng = np.random.default_rng(0)
    save_file({f"{key}.lora_down.weight": rng.standard_normal((4, width)).astype(np.float16),
               f"{key}.lora_up.weight": rng.standard_normal((16, 4)).astype(np.float16)}, str(path))  # fmt: skip
    return path


def test_bad_input_is_one_line_before_any_model_and_saves_nothing(lorahub_home, tmp_path):
    with Registry() as registry:
        registry.add_adapter(tiny_lora(tmp_path / "ours.safetensors", 32), name="ours")
        registry.add_adapter(tiny_lora(tmp_path / "sd.safetensors", 768), name="sd-style")
    good = scenes(tmp_path / "good", seed=1, count=2)
    bare = scenes(tmp_path / "bare", seed=1, count=2, captions=False)
    single = scenes(tmp_path / "single", seed=1, count=1)
    cases = {
        "without a caption (add .txt files or pass --prompt)": ["-a", "ours", "--images", bare],
        "has 1 example image; a search needs at least 2": ["-a", "ours", "--images", single],
        "--budget must be at least 1": ["-a", "ours", "--images", good, "--budget", "0"],
        "no adapter matches 'nope'": ["-a", "ours", "-a", "nope", "--images", good],
        "sd-style is for sd1, but base tiny is tiny-sd1": ["-a", "sd-style", "--images", good],
        "give the adapters to mix": ["--images", good],
    }
    argv = json.dumps([[str(a) for a in args] for args in cases.values()])
    proc = subprocess.run([sys.executable, "-c", REFUSALS, argv], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for expected, (code, output) in zip(cases, result["out"], strict=True):
        assert code == 1 and output.startswith("Error: ") and "\n" not in output, output
        assert expected in output, output
    assert result["mixes"] == [] and result["heavy"] == []
