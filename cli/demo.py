"""`lorahub demo`: the main job on the embedded tiny model."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.output import Output, info, json_option, table


@click.command()
@json_option
def demo(out: Output) -> None:
    """Build the tiny base, train example adapters and one that teaches purple, draw a grid."""
    from lorahub.app.demo import run_demo

    with out.progress("demo") as advance:
        result = run_demo(advance)
    data = {
        "base": str(result.base),
        "adapters": [r.to_json() for r in result.adapters],
        **result.extras,
    }
    out.result(data, lambda: _show_demo(result))


def _show_demo(result: Any) -> None:
    info(f"tiny base: {result.base}")
    training = result.extras.get("training", {})
    if training:
        info(
            f"trained {training.get('weights_path')}: eval loss "
            f"{training.get('heldout_loss_before', 0):.4f} -> {training.get('heldout_loss_after', 0):.4f}"
        )
        if training.get("before_after"):
            info(f"before/after samples: {training['before_after']}")
    if result.extras.get("grid"):
        info(f"the base, demo-shapes and the examples side by side: {result.extras['grid']}")
    for path in result.extras.get("generated", []):
        info(f"generated with the trained adapter: {path}")
    table(
        "demo adapters",
        ["name", "format", "base", "rank", "alpha", "modules", "tags"],
        [
            (r.name, r.format, r.base_family, r.rank, r.alpha, r.module_count, ", ".join(r.tags))
            for r in result.adapters
        ],
    )
