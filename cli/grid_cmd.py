"""`lorahub grid`: an X/Y comparison grid (one adapter's weights x prompts and seeds), batched."""

from __future__ import annotations

import click

from lorahub.cli.generate_cmd import parse_size
from lorahub.cli.output import Output, info, json_option, open_registry, progress, warn


@click.command()
@click.argument("prompt")
@click.option(
    "--adapter", "-a", required=True, metavar="REF", help="The adapter whose weight varies."
)
@click.option(
    "--weights", default="0,0.5,1", show_default=True, help="Its weights, across (columns)."
)
@click.option("--seeds", default="0", show_default=True, help="Seeds, down (rows).")
@click.option(
    "--prompt", "more_prompts", multiple=True, help="More prompts, down (rows); repeatable."
)
@click.option("--mix", default=None, help="A stored mix every cell uses besides the adapter.")
@click.option("--base", default="tiny", show_default=True, help="Base model.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--size", default=None, metavar="WxH", help="Image size, e.g. 512x512.")
@click.option("--guidance", default=7.5, show_default=True, type=float)
@click.option("--negative", default="", help="Negative prompt.")
@click.option("--scheduler", default=None, help="ddim, euler, euler_a, dpm++, ...")
@click.option(
    "--max-batch",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Most cells in one denoising loop.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The grid PNG; cells go to STEM-cells/ beside it.",
)
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: CUDA when present).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default=None)
@json_option
def grid(
    prompt: str,
    adapter: str,
    weights: str,
    seeds: str,
    more_prompts: tuple[str, ...],
    mix: str | None,
    base: str,
    steps: int,
    size: str | None,
    guidance: float,
    negative: str,
    scheduler: str | None,
    max_batch: int,
    output: str,
    device: str | None,
    dtype: str | None,
    out: Output,
) -> None:
    """One labelled PNG grid of an adapter at several weights (A1111's X/Y plot), and its cells."""
    from lorahub.app.generate import Target, resolve_grid
    from lorahub.inference.compare import parse_axis, plan_grid, render_grid

    axis_weights = parse_axis(weights, "--weights", float)
    axis_seeds = parse_axis(seeds, "--seeds", int)
    width, height = parse_size(size, None, None)
    with open_registry() as registry:
        spec, rows = resolve_grid(
            registry, adapter, (prompt, *more_prompts), mix, Target(base), warn
        )
    plan = plan_grid(
        spec,
        axis_weights,
        rows,
        axis_seeds,
        steps=steps,
        guidance=guidance,
        negative_prompt=negative,
        scheduler=scheduler,
        width=width,
        height=height,
        base=base,
    )
    with progress("grid", quiet=out.json) as advance:
        result = render_grid(
            plan, output, progress=advance, device=device, dtype=dtype, max_batch=max_batch
        )
    out.result(
        result.to_json(),
        lambda: info(
            f"wrote {result.grid} and {len(result.cells)} cells in {result.grid.stem}-cells/"
        ),
    )
