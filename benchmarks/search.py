"""`lorahub mix search` on the drawing tiny base: time for a budget, losses, what the mix draws.

    python benchmarks/search.py            # demo-shapes (trained here), example-dark, example-light
    python benchmarks/search.py --threads 1
    python benchmarks/search.py --smoke    # seeded random adapters, budget 6: seconds

Target: purple squares on a dark background (4 pictures of the synthetic world to search on,
8 others held out, scored at other noise and timesteps). Prints the search's seconds for budget 40
with torch on 2 threads, the weights, the loss of the mix, of uniform weights (1/n each) and of
each adapter alone on both sets, with the ratios, and the share of 16 pictures of "a purple
square" the judge calls purple for the mix and for uniform weights. Aims (issue 16): under 2
minutes; the mix's held-out loss below uniform and each alone; purple >= 80%; the same weights
from a second search.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

PROMPT = "a purple square"


def scenes(folder: Path, seed: int, count: int) -> Path:
    from lorahub.training.demo import caption, draw_scene

    folder.mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(count):
        draw_scene("square", "purple", 64, rng, background="dark").save(folder / f"{i:02d}.png")
        (folder / f"{i:02d}.txt").write_text(caption("purple", "square"))
    return folder


def adapters(work: Path, smoke: bool) -> dict[str, Path]:
    """The three adapters: trained (demo-shapes here, the examples from the cache) or, for the
    smoke run, seeded random LoRAs of the same shapes."""
    from lorahub.examples import DARK_EXAMPLE, DEMO_ADAPTERS, write_example_adapter

    light = DEMO_ADAPTERS[1]
    if smoke:
        specs = {"demo-shapes": replace(DARK_EXAMPLE, seed=7, style=None),
                 "example-dark": replace(DARK_EXAMPLE, style=None),
                 "example-light": replace(light, style=None)}  # fmt: skip
        return {n: write_example_adapter("tiny", work / f"{n}.safetensors", s) for n, s in specs.items()}  # fmt: skip
    from lorahub.app.demo import train_demo_adapter
    from lorahub.registry import Registry

    train_demo_adapter()
    with Registry() as reg:
        shapes = Path(reg.get_adapter("demo-shapes").path)
    return {
        "demo-shapes": shapes,
        "example-dark": write_example_adapter("tiny", work / "dark.safetensors", DARK_EXAMPLE),
        "example-light": write_example_adapter("tiny", work / "light.safetensors", light),
    }


def purple_share(engine: Any, specs: list, weights: list[float], n: int) -> float:
    from lorahub.inference import GenerationRequest
    from lorahub.judge import share_of

    chosen = [replace(s, weight=w) for s, w in zip(specs, weights, strict=True)]
    return share_of(engine.generate(GenerationRequest(PROMPT, adapters=chosen, n=n, seed=100)).images, "purple")  # fmt: skip


def held_out(
    engine: Any, specs: list, work: Path, rows: dict[str, list[float]]
) -> dict[str, float]:
    from lorahub.library.search import read_examples
    from lorahub.ops.search import MixScorer

    examples = read_examples(scenes(work / "held-out", seed=2, count=8), None)
    scorer = MixScorer(engine.runtime(), specs, examples, seed=1, timesteps=8)
    return {label: scorer.loss(w) for label, w in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1 if args.smoke else args.threads)
    with tempfile.TemporaryDirectory(prefix="lorahub-search-") as tmp:
        os.environ["LORAHUB_HOME"] = str(Path(tmp) / "home")  # never the user's registry
        run(Path(tmp), args.smoke)


def run(work: Path, smoke: bool) -> None:
    """Adapters, two searches, the held-out losses and the judged pictures; then the report."""
    import torch

    from lorahub.inference import Engine
    from lorahub.library.search import search_mix
    from lorahub.ops.search import SearchOptions
    from lorahub.registry import Registry
    from lorahub.types import MixMember

    files = adapters(work, smoke)
    names = list(files)
    reg = Registry()
    for name, path in files.items():
        if name not in {a.name for a in reg.list_adapters()}:
            reg.add_adapter(path, name=name)
    options = SearchOptions(budget=6 if smoke else 40)
    examples = scenes(work / "examples", seed=1, count=4)
    found = [
        search_mix(reg, f"found{i}", names, examples, options=options).search for i in range(2)
    ]
    best, n = found[0], len(names)
    rows = {"mix": list(best.weights), "uniform": [round(1 / n, 3)] * n}
    rows |= {f"{name} alone": [float(i == j) for j in range(n)] for i, name in enumerate(names)}
    specs = reg.resolve_members([MixMember(name) for name in names])
    with Engine(base="tiny") as engine:
        held = held_out(engine, specs, work, rows)
        count = 4 if smoke else 16
        purple = {k: purple_share(engine, specs, rows[k], count) for k in ("mix", "uniform")}
    reg.close()
    report(best, found[1].weights == best.weights, held, purple, torch.get_num_threads())


def report(best: Any, same: bool, held: dict[str, float], purple: dict[str, float], threads: int) -> None:  # fmt: skip
    print(f"mix search, budget {best.options.budget}, {best.images} images x {best.options.timesteps} timesteps, torch threads {threads}")  # fmt: skip
    print(f"  seconds: {best.seconds:.2f} ({best.evaluations} evaluations)  same weights twice: {same}")  # fmt: skip
    print("  weights: " + ", ".join(f"{n} {w:g}" for n, w in zip(best.names, best.weights, strict=True)))  # fmt: skip
    train = {"mix": best.loss, "uniform": best.uniform}
    train |= {f"{n} alone": x for n, x in zip(best.names, best.alone, strict=True)}
    print(f"  {'weights':<22} {'search loss':>12} {'held-out loss':>14} {'held-out / mix':>15}")
    for label, loss in train.items():
        print(f"  {label:<22} {loss:>12.5f} {held[label]:>14.5f} {held[label] / held['mix']:>14.2f}x")  # fmt: skip
    print(f"  judged purple: mix {purple['mix']:.0%}, uniform {purple['uniform']:.0%}")
    sys.stdout.flush()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
