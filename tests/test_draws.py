"""What the trained adapters do to the pictures, judged (the fast variants of
benchmarks/draws.py): demo-shapes teaches purple, weight 0 is the base exactly, the effect follows
the weight, a merge and a resize keep it, and the example adapters do what they say (colours
washed out, pastels)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from lorahub.judge import is_pastel, judge, share_of

pytestmark = pytest.mark.usefixtures("one_thread")
PURPLE = ("a purple circle", "a purple square")
SEEDS = range(3)
PASTEL_AIM = 5  # of 9 pictures


@pytest.fixture(scope="module")
def engine(tiny_sd1):
    from lorahub.inference import Engine

    with Engine(base="tiny") as engine:
        yield engine


def draw(engine, prompts, adapters=(), seeds=SEEDS):
    from lorahub.inference import GenerationRequest

    return [
        engine.generate(GenerationRequest(p, adapters=tuple(adapters), seed=s)).images[0]
        for p in prompts for s in seeds
    ]  # fmt: skip


def spec(home: Path, name: str, weight: float = 1.0):
    from lorahub.registry import Registry
    from lorahub.types import MixMember

    with Registry(home / "registry.db") as reg:
        return reg.resolve_members([MixMember(name, weight)])[0]


def test_training_teaches_purple_and_the_effect_follows_the_weight(engine, demo_shapes):
    shapes = spec(demo_shapes, "demo-shapes")
    shares = [share_of(draw(engine, PURPLE, [replace(shapes, weight=w)]), "purple")
              for w in (0.25, 0.5, 1.0)]  # fmt: skip
    base = share_of(draw(engine, PURPLE), "purple")
    assert base <= 1 / 6 and shares[-1] >= 5 / 6, (base, shares)
    assert base <= shares[0] <= shares[1] <= shares[2], (base, shares)


def test_weight_zero_gives_the_base_image_exactly(engine, demo_shapes):
    import numpy as np

    shapes = spec(demo_shapes, "demo-shapes", 0.0)
    (alone,) = draw(engine, PURPLE[:1], seeds=[3])
    (zero,) = draw(engine, PURPLE[:1], [shapes], seeds=[3])
    assert np.array_equal(np.asarray(alone), np.asarray(zero))


def test_merge_and_resize_keep_the_effect(engine, demo_shapes, example_adapters, monkeypatch):
    from lorahub.cli import main

    monkeypatch.setenv("LORAHUB_HOME", str(demo_shapes))
    runner = CliRunner()
    for args in (
        ["add", str(example_adapters["example-style"]), "--name", "style"],
        ["merge", "demo-shapes", "style", "--method", "svd", "--name", "merged"],
        ["resize", "demo-shapes", "--energy", "0.9", "--name", "resized"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    # a merge keeps what its members did together; a resize what the adapter did alone
    shapes, style = spec(demo_shapes, "demo-shapes"), spec(demo_shapes, "style")
    for name, reference in (("merged", [shapes, style]), ("resized", [shapes])):
        want = share_of(draw(engine, PURPLE, reference), "purple")
        share = share_of(draw(engine, PURPLE, [spec(demo_shapes, name)]), "purple")
        assert abs(share - want) <= 1 / 3, (name, share, want)


def test_the_example_adapters_do_what_they_say(engine, example_adapters):
    from lorahub.types import AdapterSpec

    def of(name):
        path = str(example_adapters[name])
        return AdapterSpec(name=name, path=path, key=path)

    prompts = ("a red circle", "a blue square", "a green triangle")
    base = draw(engine, prompts)
    grey = draw(engine, prompts, [of("example-style")])
    pastel = draw(engine, prompts, [of("example-light")])

    def saturation(images):
        return sum(judge(im).saturation or 0.0 for im in images) / len(images)

    assert not any(map(is_pastel, base)) and saturation(base) > 0.7
    assert saturation(grey) < saturation(base) - 0.2, "example-style washes colours out"
    assert sum(map(is_pastel, pastel)) >= PASTEL_AIM, "example-light draws pastels"
