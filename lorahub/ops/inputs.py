"""Inputs of an operation: resolved adapters, their per-module coefficients, module streams."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lorahub.errors import IncompatibleError, InvalidInputError, UnsupportedError
from lorahub.families import UNKNOWN_FAMILIES
from lorahub.types import AdapterSpec

LYCORIS_KINDS = ("loha", "lokr")
UNET_BLOCKS = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}


def block_of(module: str) -> str | None:
    """The UNet block (`down`/`mid`/`up`) of a canonical module name; None outside them."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "unet":
        return None
    return UNET_BLOCKS.get(parts[1])


def coefficient(spec: AdapterSpec, module: str) -> float:
    """The multiplier of `spec` on `module`: UNet weight x block weight, or the text weight."""
    component = module.split(".", 1)[0]
    if component.startswith("text_encoder"):
        return spec.text_weight
    block = block_of(module)
    factor = (spec.block_weights or {}).get(block, 1.0) if block else 1.0
    return spec.weight * factor


def spec_from_file(
    path: str | os.PathLike[str],
    weight: float = 1.0,
    te_weight: float | None = None,
    block_weights: dict[str, float] | None = None,
) -> AdapterSpec:
    """An AdapterSpec for an unregistered file (its family and network type from the header)."""
    from lorahub.formats import inspect_file

    info = inspect_file(path)
    p = Path(path).expanduser().resolve()
    return AdapterSpec(
        name=p.stem,
        path=str(p),
        key=f"{p}:{p.stat().st_mtime!r}",
        weight=weight,
        te_weight=te_weight,
        block_weights=block_weights,
        base_family=info.base_family,
        network_type=info.network_type,
    )


def check_specs(specs: Sequence[AdapterSpec]) -> str | None:
    """Refuse no inputs, the same file twice and mixed base families; returns the family."""
    if not specs:
        raise InvalidInputError("no adapters given: pass weighted references or --mix NAME")
    seen: dict[str, str] = {}
    for s in specs:
        where = str(Path(s.path).resolve())
        if where in seen:
            raise InvalidInputError(
                f"{s.name!r} and {seen[where]!r} are the same adapter; list it once"
            )
        seen[where] = s.name
    known = [s for s in specs if s.base_family not in UNKNOWN_FAMILIES]
    for s in known[1:]:
        if s.base_family != known[0].base_family:
            raise IncompatibleError(
                f"{known[0].name} is for {known[0].base_family} but {s.name} is for {s.base_family}; "
                "adapters for different base families cannot be combined"
            )
    return known[0].base_family if known else None


DORA_REASON = (
    "a DoRA magnitude renormalises W + ΔW, so combining it is only defined with the base "
    "weights; fuse it into the base (`lorahub fuse`), or resize/export it on its own"
)


def refuse_network(specs: Sequence[AdapterSpec], operation: str, allowed: tuple[str, ...]) -> None:
    """UnsupportedError naming the first adapter whose network type `operation` cannot handle."""
    for s in specs:
        kind = s.network_type or "lora"
        if kind not in allowed and kind not in ("unknown",):
            why = f": {DORA_REASON}" if kind == "dora" else f"; supported: {', '.join(allowed)}"
            raise UnsupportedError(f"{operation} does not support {kind} adapters ({s.name}){why}")


def check_module(
    name: str, spec: AdapterSpec, mw: Any, operation: str, lycoris_ok: bool, dora_ok: bool = False
) -> None:
    """Refuse module kinds an operation cannot handle (found while streaming)."""
    if mw.dora_scale is not None and not (dora_ok and mw.kind == "lora"):
        raise UnsupportedError(
            f"{operation} does not support DoRA modules ({spec.name}: {name}): {DORA_REASON}"
        )
    if mw.kind in LYCORIS_KINDS and not lycoris_ok:
        raise UnsupportedError(
            f"{operation} does not support LyCORIS {mw.kind} modules ({spec.name}: {name}); "
            "turn it into a LoRA first (`lorahub export --format diffusers --energy 0.99`), or use "
            "`merge --method svd` or `fuse`, which rebuild ΔW"
        )
    if mw.kind not in ("lora", *LYCORIS_KINDS):
        raise UnsupportedError(
            f"{operation}: module {name} of {spec.name} is incomplete ({mw.kind})"
        )


def open_readers(specs: Sequence[AdapterSpec]) -> list[Any]:
    """One streaming reader per input adapter."""
    from lorahub.formats import open_adapter

    return [open_adapter(s.path) for s in specs]


def module_groups(
    specs: Sequence[AdapterSpec], readers: Sequence[Any]
) -> Iterator[tuple[str, list[tuple[AdapterSpec, Any]]]]:
    """Yield (module name, [(spec, ModuleWeights)]) in name order, loading one module at a time."""
    names: dict[str, list[int]] = {}
    for i, reader in enumerate(readers):
        for name in reader.module_names():
            names.setdefault(name, []).append(i)
    for name in sorted(names):
        yield name, [(specs[i], readers[i].module(name)) for i in names[name]]


def total_modules(readers: Sequence[Any]) -> int:
    """The number of distinct modules across readers (for progress totals)."""
    return len({n for r in readers for n in r.module_names()})
