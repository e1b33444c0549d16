"""`lorahub images add|list|rm`: an adapter's example images (thin over the registry)."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.output import handle_errors, info, json_option, print_json, table


def _registry() -> Any:
    from lorahub.registry import Registry

    return Registry()


@click.group()
def images() -> None:
    """An adapter's example images (the first is its preview)."""


def _show(ref: str, records: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([r.to_json() for r in records])
        return
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
@handle_errors
def images_add(ref: str, files: tuple[str, ...], as_json: bool) -> None:
    """Add example images to an adapter (their generation parameters are read and kept)."""
    _show(ref, _registry().add_images(ref, list(files)), as_json)


@images.command("list")
@click.argument("ref")
@json_option
@handle_errors
def images_list(ref: str, as_json: bool) -> None:
    """List an adapter's example images."""
    _show(ref, _registry().images(ref), as_json)


@images.command("rm")
@click.argument("ref")
@click.argument("which")
@json_option
@handle_errors
def images_rm(ref: str, which: str, as_json: bool) -> None:
    """Remove one example image (by its position in `images list`, or its file name)."""
    removed = _registry().remove_image(ref, which)
    if as_json:
        print_json(removed.to_json())
    else:
        info(f"removed image {removed.position} ({removed.file}) of {ref}")
