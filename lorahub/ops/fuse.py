"""Fusing adapters into a base model: W += Σ cᵢ·ΔWᵢ module by module, saved as a pipeline folder."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lorahub.errors import AlreadyExistsError, IncompatibleError, NotFoundError, UnsupportedError
from lorahub.ops import inputs as I
from lorahub.ops.report import ModuleReport, OpReport
from lorahub.types import AdapterSpec


def fuse_adapters(
    base: str,
    specs: Sequence[AdapterSpec],
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Callable[..., None] | None = None,
) -> OpReport:
    """Load `base`, add every member's weighted ΔW to its weights, save the pipeline at `dest`."""
    from lorahub.fileio import atomic_dir
    from lorahub.models import base_family_of, load_pipeline

    dest = Path(dest)
    if dest.exists() and not force:
        raise AlreadyExistsError(f"{dest} exists (use --force to replace it)")
    family = I.check_specs(specs)
    I.refuse_network(specs, "fuse", ("lora", "locon", "loha", "lokr", "dora"))
    base_family = base_family_of(base)
    if family not in I.UNKNOWN_FAMILIES and base_family and family != base_family:
        raise IncompatibleError(
            f"the adapters are for {family} but the base {base!r} is {base_family}"
        )
    started = time.perf_counter()
    try:
        pipe = load_pipeline(base, device="cpu", dtype="fp32")
    except ValueError as exc:  # diffusers: "neither a valid local path nor a valid repo id"
        raise NotFoundError(
            f"cannot load base model {base!r}: {str(exc).splitlines()[0]}"
        ) from None
    report = OpReport("fuse", None, [s.to_json() for s in specs], str(dest))
    for spec in specs:
        _fuse_one(pipe, spec, report, progress)
    with atomic_dir(dest) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    report.seconds = time.perf_counter() - started
    return report


def _fuse_one(
    pipe: Any, spec: AdapterSpec, report: OpReport, progress: Callable[..., None] | None
) -> None:
    """Add one adapter's weighted ΔW to the pipeline's weights, module by module."""
    import torch

    from lorahub.formats import open_adapter

    reader = open_adapter(spec.path)
    if progress:
        progress(0, total=len(reader.module_names()), status=spec.name)
    for name, mw in reader.modules():
        I.check_module(name, spec, mw, "fuse", lycoris_ok=True, dora_ok=True)
        weight = target_weight(pipe, name, spec)
        c = I.coefficient(spec, name)
        delta = mw.delta_weight()
        if delta.numel() != weight.numel():
            raise IncompatibleError(
                f"{spec.name}: {name} has ΔW {tuple(delta.shape)} but the base weight is {tuple(weight.shape)}"
            )
        with torch.no_grad():
            delta = mw.fused_delta(weight, c, delta)
            weight.add_(delta.to(weight.dtype))
        norm = float(delta.double().norm())
        report.add(ModuleReport(name, int(mw.rank or 0), 0, norm, 0.0))
        if progress:
            progress(1, status=name)


def target_weight(pipe: Any, name: str, spec: AdapterSpec) -> Any:
    """The base weight tensor a canonical module name points at."""
    from lorahub.formats.modules import find_layer

    component = name.partition(".")[0]
    if getattr(pipe, component, None) is None:
        raise IncompatibleError(f"{spec.name}: the base has no {component} for module {name}")
    layer = find_layer(pipe, name)
    if layer is None:
        raise IncompatibleError(f"{spec.name}: the base has no module {name}")
    weight = getattr(layer, "weight", None)
    if weight is None:
        raise UnsupportedError(f"{spec.name}: {name} is not a layer with a weight")
    return weight.data
