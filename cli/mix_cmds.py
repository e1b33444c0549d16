"""`lorahub mix create|from-image|search|list|show|rm`: named, weighted mixes of adapters."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.ops_cmds import member_options, parse_refs
from lorahub.cli.output import Output, info, json_option, kv, open_registry, table, warn


@click.group()
def mix() -> None:
    """Named, weighted mixes of adapters."""


@mix.command("create")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@member_options
@click.option("--description", "-d", default=None, help="A line about the mix.")
@click.option("--force", is_flag=True, help="Replace a mix of the same name.")
@json_option
def mix_create(
    name: str,
    members: tuple[str, ...],
    unet_only: bool,
    te: float | None,
    blocks: tuple[str, ...],
    description: str | None,
    force: bool,
    out: Output,
) -> None:
    """Create mix NAME from weighted references REF[:W] or REF:unet=W,te=W."""
    from lorahub.types import weight_warnings

    parsed = parse_refs(members, unet_only, te, blocks)
    with open_registry() as reg:
        record = reg.create_mix(name, parsed, description=description, force=force)

    def show() -> None:
        for w in weight_warnings(parsed):
            warn(w)
        _show_mix(record)

    out.result(record.to_json(), show)


def _show_mix(record: Any) -> None:
    rows = [
        (
            m.ref,
            n or "-",
            f"{m.weight:g}",
            "-" if m.te_weight is None else f"{m.te_weight:g}",
            ",".join(f"{k}:{v:g}" for k, v in (m.block_weights or {}).items()) or "-",
        )
        for m, n in zip(record.members, record.member_names, strict=True)
    ]
    title = f"mix {record.name} ({record.base_family or 'unknown base'})"
    table(title, ["member", "adapter", "unet", "te", "blocks"], rows)
    if record.description:
        info(record.description)


@mix.command("from-image")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The mix to save.")
@click.option("--allow-missing", is_flag=True, help="Save the members found even if some are not.")
@click.option("--dry-run", is_flag=True, help="Show what would be saved; save nothing.")
@click.option("--force", is_flag=True, help="Replace a mix of that name.")
@json_option
def mix_from_image(
    image: str, name: str, allow_missing: bool, dry_run: bool, force: bool, out: Output
) -> None:
    """Save the LoRA stack of an A1111, ComfyUI or lorahub image as a mix."""
    from lorahub.library.recipes import mix_from_image as run

    with open_registry() as reg:
        result = run(reg, image, name, allow_missing=allow_missing, force=force, dry_run=dry_run)
    out.result(result.to_json(), lambda: _show_recipe(result))
    if result.missing and not (allow_missing or dry_run):
        raise click.ClickException(
            f"not registered: {result.missing_text()}; nothing saved (--allow-missing saves the rest)"
        )


def _show_recipe(result: Any) -> None:
    rows = [(m.name, m.hash or "", f"{m.weight:g}", ref, how) for m, ref, how in result.found]
    rows += [(m.name, m.hash or "", f"{m.weight:g}", "MISSING", "") for m in result.missing]
    table(f"{result.recipe.tool} image", ["lora", "hash", "weight", "adapter", "by"], rows)
    if result.mix is not None:
        info(f"saved mix {result.mix.name} ({len(result.mix.members)} members)")


@mix.command("list")
@json_option
def mix_list(out: Output) -> None:
    """List mixes."""
    with open_registry() as reg:
        mixes = reg.list_mixes()
    rows = [
        (
            m.name,
            m.base_family or "-",
            ", ".join(f"{x.ref}:{x.weight:g}" for x in m.members),
            m.description or "",
        )
        for m in mixes
    ]
    out.result(
        [m.to_json() for m in mixes],
        lambda: table("mixes", ["name", "base", "members", "description"], rows),
    )


@mix.command("show")
@click.argument("name")
@json_option
def mix_show(name: str, out: Output) -> None:
    """Show one mix."""
    with open_registry() as reg:
        record = reg.get_mix(name)
    out.result(record.to_json(), lambda: _show_mix(record))


@mix.command("rm")
@click.argument("name")
@json_option
def mix_rm(name: str, out: Output) -> None:
    """Remove a mix (its adapters stay)."""
    with open_registry() as reg:
        reg.remove_mix(name)
    out.result({"removed": name}, lambda: info(f"removed mix {name}"))


@mix.command("search")
@click.argument("name")
@click.option(
    "--adapter",
    "-a",
    "adapters",
    multiple=True,
    metavar="REF",
    help="An adapter to weigh; repeatable.",
)
@click.option(
    "--images",
    required=True,
    type=click.Path(),
    help="Example images with captions (IMG.png + IMG.txt, as for training).",
)
@click.option(
    "--prompt",
    default=None,
    help="Caption for images without one; the mix's default prompt (default: the first caption).",
)
@click.option(
    "--budget",
    type=int,
    default=40,
    show_default=True,
    help="Loss evaluations the optimiser may spend.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the noise, timesteps and optimiser.",
)
@click.option(
    "--base",
    default="tiny",
    show_default=True,
    help="Base model: tiny, tiny-sdxl, a folder or a Hub id.",
)
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: CUDA when present).")
@click.option("--force", is_flag=True, help="Replace a mix of that name.")
@json_option
def mix_search(
    name: str,
    adapters: tuple[str, ...],
    images: str,
    prompt: str | None,
    budget: int,
    seed: int,
    base: str,
    device: str | None,
    force: bool,
    out: Output,
) -> None:
    """Find the weights of --adapter ... that best denoise the example images; save mix NAME."""
    from lorahub.library.search import search_mix
    from lorahub.ops.search import SearchOptions

    options = SearchOptions(budget=budget, seed=seed)
    with open_registry() as reg, out.progress("searching", total=budget) as bar:
        result = search_mix(
            reg,
            name,
            adapters,
            images,
            prompt=prompt,
            base=base,
            options=options,
            force=force,
            device=device,
            progress=bar,
        )
    out.result(result.to_json(), lambda: _show_search(name, result))


def _show_search(name: str, result: Any) -> None:
    found = result.search
    rows = [
        (n, f"{w:g}", f"{alone:.5f}")
        for n, w, alone in zip(found.names, found.weights, found.alone, strict=True)
    ]
    table(f"mix {name}: weights found", ["adapter", "weight", "loss alone"], rows)
    kv(
        "search",
        [
            ("loss of the mix", f"{found.loss:.5f}"),
            ("loss, uniform weights", f"{found.uniform:.5f}"),
            ("evaluations", found.evaluations),
            ("images", found.images),
            ("seconds", f"{found.seconds:.1f}"),
        ],
    )
    info(f"saved mix {name}")
