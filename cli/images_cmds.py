"""`lorahub images add|list|rm`: an adapter's example images (thin over the registry)."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.output import Output, info, json_option, open_registry, table


@click.group()
def images() -> None:
    """An adapter's example images (the first is its preview)."""


def _show(out: Output, ref: str, records: list[Any]) -> None:
    out.result([r.to_json() for r in records], lambda: _image_table(ref, records))


def _image_table(ref: str, records: list[Any]) -> None:
    rows = []
    for r in records:
        p = r.params or {}
        rows.append(
            (r.position, r.file, r.tool or "", (p.get("prompt") or "")[:60], p.get("seed") or "")
        )
    table(f"images of {ref}", ["#", "file", "made with", "prompt", "seed"], rows)


@images.command("add")
@click.argument("ref")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
def images_add(ref: str, files: tuple[str, ...], out: Output) -> None:
    """Add example images to an adapter (their generation parameters are read and kept)."""
    with open_registry() as reg:
        _show(out, ref, reg.add_images(ref, list(files)))


@images.command("list")
@click.argument("ref")
@json_option
def images_list(ref: str, out: Output) -> None:
    """List an adapter's example images."""
    with open_registry() as reg:
        _show(out, ref, reg.images(ref))


@images.command("rm")
@click.argument("ref")
@click.argument("which")
@json_option
def images_rm(ref: str, which: str, out: Output) -> None:
    """Remove one example image (by its position in `images list`, or its file name)."""
    with open_registry() as reg:
        removed = reg.remove_image(ref, which)
    text = f"removed image {removed.position} ({removed.file}) of {ref}"
    out.result(removed.to_json(), lambda: info(text))
