"""`lorahub generate`: one request through the inference engine, written as PNGs with their record."""

from __future__ import annotations

import os

import click

from lorahub.cli.output import Output, info, json_option, open_registry, warn
from lorahub.errors import InvalidInputError


def parse_size(
    size: str | None, width: int | None, height: int | None
) -> tuple[int | None, int | None]:
    """`WxH` (or a single number for squares) unless --width/--height are given."""
    if size is None:
        return width, height
    w, _, h = size.lower().partition("x")
    try:
        return width or int(w), height or int(h or w)
    except ValueError:
        raise InvalidInputError(
            f"invalid --size {size!r}: use WIDTHxHEIGHT, e.g. 512x512"
        ) from None


@click.command()
@click.argument("prompt")
@click.option(
    "--adapter",
    "-a",
    "adapters",
    multiple=True,
    metavar="REF[:W]",
    help="An adapter with its weight (REF:unet=W,te=W for per-component); repeatable.",
)
@click.option("--mix", default=None, help="A stored mix to apply.")
@click.option(
    "--base",
    default="tiny",
    show_default=True,
    help="Base model: tiny, tiny-sdxl, a folder or a Hub id.",
)
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("--width", type=int, default=None, help="Image width (default: the model's).")
@click.option("--height", type=int, default=None, help="Image height (default: the model's).")
@click.option("--size", default=None, metavar="WxH", help="Width and height at once, e.g. 512x512.")
@click.option(
    "--guidance", default=7.5, show_default=True, type=float, help="Classifier-free guidance scale."
)
@click.option("--negative", default="", help="Negative prompt.")
@click.option(
    "--scheduler",
    default=None,
    help="ddim, pndm, lms, euler, euler_a, heun, dpm++, dpm++_sde, unipc, ddpm.",
)
@click.option(
    "--clip-skip", type=click.IntRange(0, 12), default=None, help="Skip the last N CLIP layers."
)
@click.option(
    "-n",
    "count",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Images (seeds SEED, SEED+1, ...).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="PNG file (STEM-000.png, ... when -n > 1).",
)
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: CUDA when present).")
@click.option(
    "--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="Weights dtype."
)
@json_option
def generate(
    prompt: str,
    adapters: tuple[str, ...],
    mix: str | None,
    base: str,
    steps: int,
    seed: int,
    width: int | None,
    height: int | None,
    size: str | None,
    guidance: float,
    negative: str,
    scheduler: str | None,
    clip_skip: int | None,
    count: int,
    output: str,
    device: str | None,
    dtype: str | None,
    out: Output,
) -> None:
    """Generate images with adapters and mixes; the PNGs record prompt, seed, adapters and hashes."""
    from lorahub.app.generate import GenerationOrder, Target, record_result, resolve_generation
    from lorahub.inference import Engine
    from lorahub.types import parse_weighted_ref

    if output.endswith(("/", os.sep)):
        raise InvalidInputError(f"-o {output}: give a file name, e.g. {output.rstrip('/')}/out.png")
    width, height = parse_size(size, width, height)
    order = GenerationOrder(
        prompt=prompt,
        adapters=tuple(parse_weighted_ref(r) for r in adapters),
        mix=mix,
        settings={
            "negative_prompt": negative,
            "steps": steps,
            "guidance": guidance,
            "seed": seed,
            "width": width,
            "height": height,
            "n": count,
            "scheduler": scheduler,
            "clip_skip": clip_skip,
            "base": base,
        },
    )
    with open_registry() as registry:
        request = resolve_generation(registry, order, Target(base), warn)
    with Engine(base=base, device=device, dtype=dtype) as engine:
        result = engine.generate(request)
    paths = record_result(result, output).paths
    data = {"files": [str(p) for p in paths], "record": result.record}
    out.result(data, lambda: info("\n".join(f"wrote {path}" for path in paths)))
