"""`lorahub inspect FILE|NAME`: what an adapter is, read from its header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lorahub.cli.output import Output, json_option, kv, open_registry, table, warn


@click.command("inspect")
@click.argument("target")
@json_option
@click.option(
    "--spectrum",
    "with_spectrum",
    is_flag=True,
    help="Singular values of ΔW per module (reads tensors).",
)
@click.option(
    "--hash", "with_hash", is_flag=True, help="Compute sha256/AutoV2 and the tensor hash/AutoV3."
)
@click.option("--trust-pickle", is_flag=True, help="Load .ckpt/.pt/.bin files (weights_only=True).")
def inspect(
    target: str, out: Output, with_spectrum: bool, with_hash: bool, trust_pickle: bool
) -> None:
    """Inspect an adapter file or registered adapter without loading it whole."""
    from lorahub.formats import inspect_file

    path = _resolve(target)
    info = inspect_file(path, trust_pickle=trust_pickle, hash=with_hash)
    spec = None
    if with_spectrum:
        from lorahub.formats import spectrum

        spec = spectrum(path, trust_pickle=trust_pickle)
    data = info.to_json()
    out.result(
        {**data, "spectrum": spec} if spec is not None else data, lambda: _render(data, spec)
    )


def _resolve(target: str) -> Path:
    """An existing path, else a registry reference (NAME[@VERSION] or hash prefix)."""
    path = Path(target).expanduser()
    if path.exists() or path.is_symlink():  # a broken link: the reader says so, not "no name"
        return path
    with open_registry() as reg:
        return Path(reg.get_adapter(target).path)


def _render(info: dict[str, Any], spec: dict[str, Any] | None) -> None:
    rank = (
        info["rank"]
        if info["rank_min"] == info["rank_max"]
        else f"{info['rank']} ({info['rank_min']}–{info['rank_max']})"
    )
    rows = [
        ("path", info["path"]),
        ("format", info["format"]),
        ("network", info["network_type"]),
        ("base", info["base_family"]),
        ("components", ", ".join(info["components"]) or "-"),
        ("modules", info["module_count"]),
        ("rank", rank if rank is not None else "-"),
        ("alpha", info["alpha"] if info["alpha"] is not None else "- (= rank)"),
        ("dtype", info["dtype"] or "-"),
        ("parameters", f"{info['param_count']:,}"),
        ("size", f"{info['size']:,} bytes (header read: {info['header_bytes']:,})"),
        ("targets", ", ".join(info["targets"]) or "-"),
    ]
    if info["trigger_words"]:
        rows.append(("trigger words", ", ".join(info["trigger_words"])))
    if info["hashes"]:
        h = info["hashes"]
        rows += [
            ("sha256", h["sha256"]),
            ("AutoV2", h["autov2"]),
            ("tensor sha256", h["tensor_sha256"] or "-"),
            ("AutoV3", h["autov3"] or "-"),
        ]
    kv("Adapter", rows)
    comps = info["component_summary"]
    if comps:
        table(
            "Components",
            ["component", "modules", "rank", "min", "max"],
            [[c, s["modules"], s["rank"], s["rank_min"], s["rank_max"]] for c, s in comps.items()],
        )
    kv("Base-family evidence", [("", line) for line in info["base_evidence"]] or [("", "none")])
    if info["base_conflict"]:
        warn(f"base family conflict: {info['base_conflict']}")
    if info["summary"]:
        kv("Training metadata", [(k, v) for k, v in info["summary"].items()])
    if info["key_patterns"]:
        kv("Unrecognised key patterns", [("", p) for p in info["key_patterns"]])
    if spec is not None:
        _render_spectrum(spec)


def _render_spectrum(spec: dict[str, Any]) -> None:
    rows = [
        [
            name,
            m["rank"],
            m["effective_rank_90"],
            m["effective_rank_99"],
            f"{m['norm']:.4g}",
            " ".join(f"{v:.3g}" for v in m["singular_values"][:6]),
        ]
        for name, m in spec["modules"].items()
    ]
    table(
        "Spectrum of ΔW", ["module", "rank", "eff90", "eff99", "‖ΔW‖", "top singular values"], rows
    )
    kv("Spectrum summary", list(spec["summary"].items()))
