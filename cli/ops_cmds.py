"""`lorahub merge|resize|export|extract|fuse`: thin click commands over `lorahub.app.ops`."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.output import Output, json_option, kv, open_registry, table, warn

FORMATS = click.Choice(["diffusers", "kohya", "peft"])
MEMBER_OPTIONS = [
    click.option(
        "--unet-only", is_flag=True, help="Apply the members to the UNet only (text weight 0)."
    ),
    click.option(
        "--te", "te", type=float, default=None, help="Text-encoder weight for every member."
    ),
    click.option(
        "--blocks", multiple=True, metavar="REF=down:W,mid:W,up:W", help="Per-block UNet weights."
    ),
]


def member_options(func: Any) -> Any:
    """--unet-only, --te, --blocks."""
    for opt in reversed(MEMBER_OPTIONS):
        func = opt(func)
    return func


def parse_refs(
    refs: tuple[str, ...], unet_only: bool, te: float | None, blocks: tuple[str, ...]
) -> list[Any]:
    """Weighted references with --unet-only, --te and --blocks applied."""
    from lorahub.app.ops import parse_members

    return parse_members(refs, unet_only=unet_only, te=te, blocks=blocks)


def _show_report(out: Output, report: Any, verbose: bool = True) -> None:
    """The report of an operation: its JSON, or a summary, the worst modules, then warnings."""
    out.result(report.to_json(), lambda: _print_report(report, verbose))


def _print_report(report: Any, verbose: bool) -> None:
    lo, hi = report.rank_out
    rows = sorted(report.modules, key=lambda m: -m.rel_error)
    shown = rows if verbose else rows[:10]
    if report.operation != "fuse":
        table(
            f"{report.operation} ({report.method}): per-module relative error",
            ["module", "rank in", "rank out", "rel. error"],
            [(m.name, m.rank_in, m.rank_out, f"{m.rel_error:.3g}") for m in shown],
        )
    pairs = [
        ("output", report.output),
        ("registered as", report.registered or "-"),
        ("modules", len(report.modules)),
        ("output rank", f"{lo}" if lo == hi else f"{lo}-{hi}"),
        ("overall rel. error", f"{report.overall_error:.4g}"),
        ("worst module", f"{report.max_error:.4g}"),
        ("seconds", f"{report.seconds:.2f}" if report.seconds is not None else "-"),
    ]
    kv(
        f"{report.operation} report",
        pairs if report.operation != "fuse" else pairs[:3] + pairs[-1:],
    )
    for w in report.warnings:
        warn(w)


def output_options(func: Any) -> Any:
    """--name, -o, --force."""
    func = click.option("--force", is_flag=True, help="Replace an existing name or path.")(func)
    func = click.option("-o", "--output", default=None, help="Write to this file or folder.")(func)
    return click.option("--name", default=None, help="Register the result under this name.")(func)


@click.command()
@click.argument("members", nargs=-1)
@click.option("--mix", "mix_name", default=None, help="Merge the members of this mix.")
@click.option(
    "--method",
    type=click.Choice(["cat", "svd", "linear", "ties", "dare"]),
    default="svd",
    show_default=True,
    help="cat: exact (ranks add up); svd: truncate to --rank; linear: A and B combined separately (equal ranks); ties/dare: sparsified task vectors.",
)
@click.option(
    "--rank",
    type=int,
    default=None,
    help="Output rank for svd/ties/dare (default: the largest input rank).",
)
@click.option(
    "--density",
    type=float,
    default=None,
    help="Kept fraction for ties (default 0.2) and dare (default 0.5).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of dare's random drop.")
@click.option("--format", "fmt", type=FORMATS, default="diffusers", show_default=True)
@member_options
@output_options
@json_option
def merge(
    members: tuple[str, ...],
    mix_name: str | None,
    method: str,
    rank: int | None,
    density: float | None,
    seed: int,
    fmt: str,
    unet_only: bool,
    te: float | None,
    blocks: tuple[str, ...],
    name: str | None,
    output: str | None,
    force: bool,
    out: Output,
) -> None:
    """Merge weighted adapters (REF[:W], files, or --mix NAME) into one adapter."""
    from lorahub.app import ops as api
    from lorahub.ops.merge import MergeOptions

    parsed = parse_refs(members, unet_only, te, blocks)
    with open_registry() as reg, out.progress("merging") as bar:
        report = api.merge(
            reg,
            parsed,
            MergeOptions(method, rank, density, seed),
            api.Output(name, output, force),
            mix=mix_name,
            format=fmt,
            progress=bar,
        )
    _show_report(out, report, verbose=False)


def rank_options(func: Any) -> Any:
    """--rank / --energy: the rank a truncated SVD keeps per module (resize, LyCORIS export)."""
    func = click.option(
        "--energy",
        type=float,
        default=None,
        help="Per-module rank keeping this fraction of ‖ΔW‖² (e.g. 0.99).",
    )(func)
    return click.option(
        "--rank", type=int, default=None, help="Keep at most this rank per module."
    )(func)


@click.command()
@click.argument("ref")
@rank_options
@click.option("--format", "fmt", type=FORMATS, default="diffusers", show_default=True)
@output_options
@json_option
def resize(
    ref: str,
    rank: int | None,
    energy: float | None,
    fmt: str,
    name: str | None,
    output: str | None,
    force: bool,
    out: Output,
) -> None:
    """Reduce an adapter's rank (truncated SVD per module), reporting the error per module."""
    from lorahub.app import ops as api

    with open_registry() as reg, out.progress("resizing") as bar:
        report = api.resize(
            reg,
            ref,
            api.Output(name, output, force),
            rank=rank,
            energy=energy,
            format=fmt,
            progress=bar,
        )
    _show_report(out, report, verbose=False)


@click.command()
@click.argument("ref")
@click.option("--format", "fmt", type=FORMATS, required=True, help="The layout to write.")
@rank_options
@output_options
@json_option
def export(
    ref: str,
    fmt: str,
    rank: int | None,
    energy: float | None,
    name: str | None,
    output: str | None,
    force: bool,
    out: Output,
) -> None:
    """Convert an adapter to the diffusers, kohya (A1111/ComfyUI) or PEFT layout.

    A LyCORIS LoKr/LoHa becomes a plain LoRA at --rank R or --energy E, its error reported.
    """
    from lorahub.app import ops as api

    target = api.Output(name, output, force)
    with open_registry() as reg:
        report = api.export(reg, ref, target, format=fmt, rank=rank, energy=energy)
    _show_report(out, report, verbose=False)


@click.command()
@click.option(
    "--base",
    required=True,
    help="The original model: a tiny id, a diffusers folder, a single-file checkpoint or a Hub id.",
)
@click.option("--tuned", required=True, help="The fine-tuned model, in any of the same forms.")
@rank_options
@click.option(
    "--min-change",
    type=float,
    default=None,
    help="Skip modules whose ‖ΔW‖/‖W‖ is at most this (default 1e-6).",
)
@click.option("--format", "fmt", type=FORMATS, default="diffusers", show_default=True)
@click.option(
    "--trust-pickle", is_flag=True, help="Load .ckpt/.bin checkpoints (weights_only=True)."
)
@output_options
@json_option
def extract(
    base: str,
    tuned: str,
    rank: int | None,
    energy: float | None,
    min_change: float | None,
    fmt: str,
    trust_pickle: bool,
    name: str | None,
    output: str | None,
    force: bool,
    out: Output,
) -> None:
    """Extract a LoRA (LoCon where convs changed) from a fine-tune and its base."""
    from lorahub.app import ops as api
    from lorahub.ops.extract import DEFAULT_MIN_CHANGE, ExtractOptions

    options = ExtractOptions(rank, energy, DEFAULT_MIN_CHANGE if min_change is None else min_change)
    with open_registry() as reg, out.progress("extracting") as bar:
        report = api.extract(
            reg,
            base,
            tuned,
            options,
            api.Output(name, output, force),
            format=fmt,
            trust_pickle=trust_pickle,
            progress=bar,
        )
    _show_report(out, report, verbose=False)


@click.command()
@click.argument("members", nargs=-1)
@click.option(
    "--base", required=True, help="Base model: tiny, tiny-sdxl, a pipeline folder or a Hub id."
)
@click.option("--mix", "mix_name", default=None, help="Fuse the members of this mix.")
@click.option("-o", "--output", required=True, help="The pipeline folder to write.")
@click.option(
    "--name",
    default=None,
    help="Record the fused model under this name (default: the folder name).",
)
@click.option("--force", is_flag=True, help="Replace an existing folder or model record.")
@member_options
@json_option
def fuse(
    members: tuple[str, ...],
    base: str,
    mix_name: str | None,
    output: str,
    name: str | None,
    force: bool,
    unet_only: bool,
    te: float | None,
    blocks: tuple[str, ...],
    out: Output,
) -> None:
    """Fuse weighted adapters into a full base model folder (not an adapter)."""
    from lorahub.app import ops as api

    parsed = parse_refs(members, unet_only, te, blocks)
    with open_registry() as reg, out.progress("fusing") as bar:
        report = api.fuse(
            reg, parsed, base, output, mix=mix_name, name=name, force=force, progress=bar
        )
    _show_report(out, report)
