"""What the tiny bases draw, judged: colour and shape accuracy, and how adapters move it.

    python benchmarks/draws.py            # 12 prompts x 16 seeds per base, the adapter sweeps
    python benchmarks/draws.py --smoke    # 2 seeds, a short demo-shapes training: seconds

Prints, at the bases' defaults (64x64, 20 steps, guidance 7.5):
  1. per tiny base, colour and shape accuracy over the 12 seen prompts ("a {colour} {shape}");
  2. the purple share of "a purple circle" / "a purple square" images with `demo-shapes` (trained
     here as `lorahub demo` trains it) at weights 0, 0.25, 0.5, 0.75, 1;
  3. the same share after an `svd` merge of demo-shapes with example-light (rank = the sum of
     ranks), after `resize --energy 0.9`, and for the kohya export of demo-shapes loaded by
     plain diffusers `load_lora_weights` (the peer way) beside lorahub's engine on that file.
Aims (issue 11): tiny-sd1 colour >= 95%, shape >= 85%; tiny-sdxl >= 90% / 80%; purple share
<= 5% at weight 0, >= 80% at weight 1, growing with the weight; merged within 5 points of
demo-shapes alone, resized within 10, the kohya export in plain diffusers within 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

PURPLE_PROMPTS = ("a purple circle", "a purple square")
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def cli(*args: str) -> Any:
    from lorahub.cli import main

    result = CliRunner().invoke(main, [*args, "--json"])
    if result.exit_code != 0:
        raise SystemExit(f"lorahub {' '.join(args)} failed:\n{result.output[-2000:]}")
    return json.loads(result.output)


def render(engine: Any, prompt: str, seeds: range, adapters: tuple = ()) -> list[Any]:
    from lorahub.inference import GenerationRequest

    images = []
    for seed in seeds:
        request = GenerationRequest(prompt=prompt, adapters=adapters, seed=seed)
        images += engine.generate(request).images
    return images


def accuracy(base: str, seeds: range) -> dict[str, float]:
    from lorahub.inference import Engine
    from lorahub.judge import judge
    from lorahub.training.demo import COLOURS, SHAPES, caption

    colour = shape = n = 0
    t0 = time.perf_counter()
    with Engine(base=base) as engine:
        for c in COLOURS:
            for s in SHAPES:
                for image in render(engine, caption(c, s), seeds):
                    v = judge(image)
                    colour, shape, n = colour + (v.colour == c), shape + (v.shape == s), n + 1
    return {"colour": colour / n, "shape": shape / n, "images": n,
            "s_per_image": (time.perf_counter() - t0) / n}  # fmt: skip


def purple_share(engine: Any, spec: Any, weight: float, seeds: range) -> float:
    from dataclasses import replace

    from lorahub.judge import share_of

    adapters = (replace(spec, weight=weight),) if weight else ()
    images = [im for p in PURPLE_PROMPTS for im in render(engine, p, seeds, adapters)]
    return share_of(images, "purple")


def plain_diffusers_share(kohya_file: Path, seeds: range) -> float:
    """The peer: diffusers' own loader on lorahub's kohya export, no lorahub in the loop."""
    import torch
    from diffusers import StableDiffusionPipeline

    from lorahub.judge import share_of
    from lorahub.tiny import ensure_tiny

    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny("tiny"))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(kohya_file.parent), weight_name=kohya_file.name)
    images = [
        pipe(p, num_inference_steps=20, guidance_scale=7.5,
             generator=torch.Generator().manual_seed(s)).images[0]
        for p in PURPLE_PROMPTS for s in seeds
    ]  # fmt: skip
    return share_of(images, "purple")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the adapter sweeps")
    args = parser.parse_args()
    seeds = range(2) if args.smoke else range(16)
    home = Path(tempfile.mkdtemp(prefix="draws-"))
    os.environ["LORAHUB_HOME"] = str(home)
    os.chdir(home)

    from dataclasses import replace

    from lorahub.app.demo import train_demo_adapter
    from lorahub.examples import DEMO_ADAPTERS, write_example_adapter
    from lorahub.inference import Engine
    from lorahub.judge import share_of
    from lorahub.registry import Registry
    from lorahub.types import MixMember

    bases = () if args.skip_accuracy else ("tiny",) if args.smoke else ("tiny", "tiny-sdxl")
    for base in bases:
        acc = accuracy(base, range(1) if args.smoke else seeds)
        print(f"{base}: colour {acc['colour']:.1%}, shape {acc['shape']:.1%} over "
              f"{acc['images']} images ({acc['s_per_image']:.2f} s/image)")  # fmt: skip
    # example-light (pastels) keeps a purple purple; example-style shifts hues as it washes them
    # out, so a merge with it is judged against the stack it came from (printed) rather than
    # against demo-shapes alone
    style = DEMO_ADAPTERS[1]
    write_example_adapter("tiny", home / f"{style.name}.safetensors", style)
    cli("add", str(home / f"{style.name}.safetensors"), "--name", style.name)
    train_demo_adapter(steps=20 if args.smoke else None)
    cli("merge", "demo-shapes", style.name, "--method", "svd", "--name", "merged")
    cli("resize", "demo-shapes", "--energy", "0.9", "--name", "resized")
    cli("export", "demo-shapes", "--format", "kohya", "-o", "demo-kohya.safetensors")
    with Registry() as reg:
        specs = {n: reg.resolve_members([MixMember(n, 1.0)])[0]
                 for n in ("demo-shapes", "merged", "resized", style.name)}  # fmt: skip
    rows = []
    with Engine(base="tiny") as engine:
        sweep = {w: purple_share(engine, specs["demo-shapes"], w, seeds) for w in WEIGHTS}
        print("purple share with demo-shapes by weight: "
              + ", ".join(f"{w:g}: {s:.1%}" for w, s in sweep.items()))  # fmt: skip
        stack = [replace(specs["demo-shapes"], weight=1.0), specs[style.name]]
        both = share_of(
            [im for p in PURPLE_PROMPTS for im in render(engine, p, seeds, tuple(stack))], "purple"
        )
        print(f"demo-shapes + {style.name} stacked (what the merge should keep): {both:.1%}")
        for name in ("merged", "resized"):
            rows.append((name, purple_share(engine, specs[name], 1.0, seeds)))
    rows.append(("kohya export, plain diffusers", plain_diffusers_share(
        home / "demo-kohya.safetensors", seeds)))  # fmt: skip
    alone = sweep[1.0]
    for name, share in rows:
        print(f"{name}: purple share {share:.1%} ({(share - alone) * 100:+.1f} points "
              "against demo-shapes alone)")  # merged: compare with the stack above  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
