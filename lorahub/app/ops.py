"""The op use cases: resolve members, run an op, name the output, register it with lineage.

Each function here is the ONE library call behind a CLI command (`merge`, `resize`, `export`,
`fuse`, `extract`); the tensor work lives in lorahub/ops (merge.py, resize.py, export.py, fuse.py,
extract.py), which returns reports and never opens the registry; register.py records results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.app.register import (
    adapter_exists,
    model_exists,
    register_derived,
    register_extracted,
    register_fused,
)
from lorahub.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from lorahub.ops import inputs as I
from lorahub.ops.merge import MergeOptions
from lorahub.ops.report import OpReport
from lorahub.types import AdapterSpec, MixMember, check_name, parse_weighted_ref

if TYPE_CHECKING:
    from lorahub.registry import Registry

Progress = Callable[..., None] | None
SUFFIX = {"diffusers": ".safetensors", "kohya": ".safetensors", "peft": ""}


@dataclass(frozen=True)
class Output:
    """Where a result goes: a registry name, a path, or both (then the file is registered in place)."""

    name: str | None = None
    path: str | None = None
    force: bool = False


def parse_members(
    texts: Sequence[str],
    *,
    unet_only: bool = False,
    te: float | None = None,
    blocks: Sequence[str] = (),
) -> list[MixMember]:
    """Weighted references (or file paths, `PATH[:W]`) with --unet-only, --te and --blocks applied."""
    from lorahub.types import parse_block_weights

    if unet_only and te is not None:
        raise InvalidInputError("--unet-only and --te exclude each other")
    members = [_parse_one(t) for t in texts]
    by_ref: dict[str, dict[str, float]] = {}
    for b in blocks:
        ref, eq, spec = b.partition("=")
        if not eq or ref not in {m.ref for m in members}:
            raise InvalidInputError(
                f"--blocks {b!r}: use REF=down:W,mid:W,up:W for a listed member"
            )
        by_ref[ref] = parse_block_weights(spec)
    text = 0.0 if unet_only else te
    return [
        MixMember(
            m.ref,
            m.weight,
            m.te_weight if text is None or m.te_weight is not None else text,
            by_ref.get(m.ref),
        )
        for m in members
    ]


def _parse_one(text: str) -> MixMember:
    """`REF[:W]`, `REF:unet=W,te=W`, or the same with an existing file path in place of REF."""
    head, sep, tail = text.rpartition(":")
    if Path(text).expanduser().is_file():
        return MixMember(text)
    if sep and Path(head).expanduser().is_file():
        m = parse_weighted_ref(f"file:{tail}")
        return MixMember(head, m.weight, m.te_weight)
    _refuse_missing_path(head if sep and "=" not in tail and _looks_like_path(head) else text)
    return parse_weighted_ref(text)


def _looks_like_path(ref: str) -> bool:
    """A reference that can only be a file path (registry names have no '/')."""
    return "/" in ref or os.sep in ref or ref.startswith("~")


def _refuse_missing_path(ref: str) -> None:
    """NotFoundError for a path that does not exist (rather than "invalid name")."""
    if _looks_like_path(ref) and not Path(ref).expanduser().exists():
        raise NotFoundError(f"no such file: {ref}")


def resolve(registry: Registry, members: Sequence[MixMember], mix: str | None) -> list[AdapterSpec]:
    """AdapterSpecs for members (registered refs and files) or a stored mix; one family, no duplicates."""
    if mix and members:
        raise InvalidInputError("give adapters or --mix NAME, not both")
    if mix:
        specs = registry.resolve_mix(mix)
    else:
        files = {i for i, m in enumerate(members) if _is_file(m.ref)}
        refs = [m for i, m in enumerate(members) if i not in files]
        resolved = iter(registry.resolve_members(refs) if refs else [])
        specs = [
            I.spec_from_file(m.ref, m.weight, m.te_weight, m.block_weights)
            if i in files
            else next(resolved)
            for i, m in enumerate(members)
        ]
    I.check_specs(specs)
    return specs


def _is_file(ref: str) -> bool:
    return ("/" in ref or ref.endswith(".safetensors")) and Path(ref).expanduser().exists()


def destination(registry: Registry, out: Output, stem: str, format: str = "diffusers") -> Path:
    """The file to write: -o PATH, or the store path of --name; refuses taken names without force."""
    if not out.name and not out.path:
        raise InvalidInputError("name the result with --name NAME (registry) or -o PATH (file)")
    if out.name:
        check_name(out.name)
        if not out.force and adapter_exists(registry, out.name):
            raise AlreadyExistsError(f"adapter {out.name!r} exists (use --force to replace it)")
    if out.path:
        path = Path(out.path).expanduser().resolve()
        if path.exists() and not path.is_file():
            raise InvalidInputError(f"{path} is not a regular file; --force replaces files only")
        if path.exists() and not out.force:
            raise AlreadyExistsError(f"{path} exists (use --force to replace it)")
        _check_not_registered(registry, path, out.name)
        return path
    from lorahub.paths import store_dir

    return store_dir() / str(out.name) / f"{out.name}{SUFFIX.get(format, '.safetensors') or ''}"


def _check_not_registered(registry: Registry, path: Path, name: str | None) -> None:
    """Refuse to write over another registered adapter's file (a mix or lineage may use it)."""
    from lorahub.registry.adapters import registered_at

    db = getattr(registry, "db", None)
    other = registered_at(db, str(path)) if db is not None else None
    if other is not None and other[1] != name:
        raise AlreadyExistsError(
            f"{path} is the file of registered adapter {other[1]!r}; --force never replaces "
            "another adapter's file (remove it with `lorahub rm` first, or write elsewhere)"
        )


def _register(
    registry: Registry,
    path: Path,
    out: Output,
    relation: tuple[str, str],
    inputs: tuple[Sequence[AdapterSpec], OpReport],
) -> str | None:
    """Register the written file under --name as (source, relation); None without --name."""
    if not out.name:
        return None
    source, edge = relation
    return register_derived(
        registry, path, out.name, source=source, relation=edge, inputs=inputs, force=out.force
    )


def merge(
    registry: Registry,
    members: Sequence[MixMember],
    options: MergeOptions,
    out: Output,
    *,
    mix: str | None = None,
    format: str = "diffusers",
    progress: Progress = None,
) -> OpReport:
    """Merge members (or a mix) into one adapter; write, register with merged-from lineage."""
    from lorahub.ops.merge import merge_adapters

    options = options.check()
    specs = resolve(registry, members, mix)
    dest = destination(registry, out, "merged", format)
    report = merge_adapters(specs, dest, options, format=format, progress=progress)
    report.warnings.extend(_weight_warnings(specs))
    report.registered = _register(registry, dest, out, ("merged", "merged-from"), (specs, report))
    return report


def _weight_warnings(specs: Sequence[AdapterSpec]) -> list[str]:
    from lorahub.types import weight_warnings

    return weight_warnings(
        [MixMember(s.name, s.weight, s.te_weight, s.block_weights) for s in specs]
    )


def _single(registry: Registry, ref: str) -> AdapterSpec:
    """An adapter given by reference or file path, as a spec."""
    if _is_file(ref) or Path(ref).expanduser().is_file():
        return I.spec_from_file(ref)
    _refuse_missing_path(ref)
    return registry.resolve_members([MixMember(ref)])[0]


def resize(
    registry: Registry,
    ref: str,
    out: Output,
    *,
    rank: int | None = None,
    energy: float | None = None,
    format: str = "diffusers",
    progress: Progress = None,
) -> OpReport:
    """Resize one adapter; register the result with resized-from lineage."""
    from lorahub.ops.resize import check_resize, resize_adapter

    check_resize(rank, energy)
    spec = _single(registry, ref)
    dest = destination(registry, out, spec.name, format)
    report = resize_adapter(
        spec.path, dest, rank=rank, energy=energy, format=format, progress=progress
    )
    report.inputs = [{"name": spec.name}]
    report.registered = _register(
        registry, dest, out, ("resized", "resized-from"), ([spec], report)
    )
    return report


def export(
    registry: Registry,
    ref: str,
    out: Output,
    *,
    format: str,
    rank: int | None = None,
    energy: float | None = None,
) -> OpReport:
    """Convert one adapter to `format` (a LyCORIS one to a LoRA at `rank`/`energy`); with
    --name, register it with converted-from lineage."""
    from lorahub.ops.export import export_adapter

    spec = _single(registry, ref)
    dest = destination(registry, out, spec.name, format)
    report = export_adapter(spec.path, dest, format=format, rank=rank, energy=energy)
    report.inputs = [{"name": spec.name, **report.inputs[0]}]
    report.registered = _register(
        registry, dest, out, ("converted", "converted-from"), ([spec], report)
    )
    return report


def fuse(
    registry: Registry,
    members: Sequence[MixMember],
    base: str,
    output: str | os.PathLike[str],
    *,
    mix: str | None = None,
    name: str | None = None,
    force: bool = False,
    progress: Progress = None,
) -> OpReport:
    """Fuse members (or a mix) into `base`, save the pipeline folder, record the model and lineage."""
    from lorahub.ops.fuse import fuse_adapters

    specs = resolve(registry, members, mix)
    model_name = check_name(name or Path(output).name, "model name")
    if not force and model_exists(registry, model_name):
        raise AlreadyExistsError(f"model {model_name!r} exists (use --force to replace it)")
    dest = Path(output).expanduser().resolve()
    report = fuse_adapters(base, specs, dest, force=force, progress=progress)
    report.warnings.extend(_weight_warnings(specs))
    report.registered = register_fused(
        registry,
        specs,
        report,
        (model_name, dest, base),
        base_family=I.check_specs(specs),
        force=force,
    )
    return report


def extract(
    registry: Registry,
    base: str,
    tuned: str,
    options: Any,
    out: Output,
    *,
    format: str = "diffusers",
    trust_pickle: bool = False,
    progress: Progress = None,
) -> OpReport:
    """Extract the LoRA between two checkpoints; with --name, register it with extracted-from
    lineage to both (recorded as models when they are not yet)."""
    from lorahub.ops.checkpoint import local_checkpoint
    from lorahub.ops.extract import extract_lora

    options = options.check()
    dest = destination(registry, out, "extracted", format)
    paths = {role: local_checkpoint(ref) for role, ref in (("base", base), ("tuned", tuned))}
    report = extract_lora(
        paths["base"],
        paths["tuned"],
        dest,
        options,
        format=format,
        trust_pickle=trust_pickle,
        progress=progress,
    )
    if out.name:
        checkpoints = {"base": (base, paths["base"]), "tuned": (tuned, paths["tuned"])}
        report.registered = register_extracted(
            registry, dest, out.name, report, checkpoints, force=out.force
        )
    return report
