"""Resizing an adapter: a lower rank per module, by a fixed rank or by kept spectral energy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from lorahub.errors import InvalidInputError, UnsupportedError
from lorahub.ops import inputs as I
from lorahub.ops import lowrank as LR
from lorahub.ops.merge import make_lora, module_shape, out_dtype
from lorahub.ops.report import ModuleReport, OpReport

DORA_NOTE = (
    "DoRA: the low-rank part is resized and its error reported; the magnitude vector is kept "
    "as is (the final weight also depends on the base's)"
)


def check_resize(rank: int | None, energy: float | None) -> None:
    """One of --rank R (≥1) or --energy E (0 < E ≤ 1) is needed; both caps the energy's rank."""
    if rank is None and energy is None:
        raise InvalidInputError("resize needs --rank R or --energy E (e.g. 0.99)")
    if rank is not None and rank < 1:
        raise InvalidInputError(f"--rank must be at least 1, not {rank}")
    if energy is not None and not 0 < energy <= 1:
        raise InvalidInputError(f"--energy must be in (0, 1], not {energy}")


def resize_adapter(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    rank: int | None = None,
    energy: float | None = None,
    format: str = "diffusers",
    metadata: dict[str, str] | None = None,
    progress: Callable[..., None] | None = None,
) -> OpReport:
    """Write `path` at a lower rank to `dest` (truncated SVD per module); report error per module."""
    from lorahub.formats import open_adapter, write_adapter

    check_resize(rank, energy)
    reader = open_adapter(path)
    info = reader.info
    report = OpReport("resize", "svd", [{"name": str(path)}], str(dest), rank=rank, energy=energy)
    started = time.perf_counter()
    if progress:
        progress(0, total=len(reader.module_names()))
    modules = _stream(reader, rank, energy, report, progress)
    meta = {**_carried(info.metadata), "lorahub_operation": "resize", **(metadata or {})}
    write_adapter(modules, dest, format=format, metadata=meta, base_family=info.base_family)
    report.seconds = time.perf_counter() - started
    return report


def _carried(metadata: dict[str, str]) -> dict[str, str]:
    """Training metadata worth keeping; format-specific entries are the writer's to set."""
    drop = ("lora_adapter_metadata", "format", "ss_network_dim", "ss_network_alpha")
    return {k: v for k, v in metadata.items() if k not in drop}


def _stream(
    reader: Any,
    rank: int | None,
    energy: float | None,
    report: OpReport,
    progress: Callable[..., None] | None,
) -> Iterator[tuple[str, Any]]:
    from lorahub.types import AdapterSpec

    spec = AdapterSpec(name=str(reader.info.path), path=str(reader.info.path), key="")
    for name, mw in reader.modules():
        I.check_module(name, spec, mw, "resize", lycoris_ok=True, dora_ok=True)
        if mw.dora_scale is not None and DORA_NOTE not in report.warnings:
            report.warnings.append(DORA_NOTE)
        out, row = resize_module(name, mw, rank, energy)
        report.add(row)
        if progress:
            progress(1, status=name)
        yield name, out


def resize_module(
    name: str, mw: Any, rank: int | None, energy: float | None
) -> tuple[Any, ModuleReport]:
    """Truncated SVD of one module's ΔW as a LoRA; LoKr/LoHa by the exact SVD of their structure.

    For LoRA inputs the error is measured on the written factors; for LyCORIS it is the exact
    tail of ΔW's singular values (the SVD is of ΔW itself, not an estimate).
    """
    import torch

    if mw.kind in ("lokr", "loha"):
        return _lycoris_module(name, mw, rank, energy)
    if mw.mid is not None:
        raise UnsupportedError(f"resize does not support Tucker (lora_mid) modules ({name})")
    up2d, down2d = mw.up.reshape(mw.up.shape[0], -1), LR.to_2d(mw.down)
    t_up, t_down = LR.stack_factors([(mw.scale, up2d, down2d)])
    cap = min(rank, mw.rank) if rank is not None else mw.rank
    f = LR.factored_svd(t_up, t_down, rank=cap, energy=energy)
    dtype = mw.down.dtype if mw.down.dtype != torch.float64 else torch.float32
    out = make_lora(
        f.up, f.down, int(mw.up.shape[0]), tuple(int(d) for d in mw.down.shape[1:]), dtype
    )
    err = LR.factored_error(out.up.reshape(out.up.shape[0], -1), LR.to_2d(out.down), t_up, t_down)
    out.dora_scale = mw.dora_scale
    return out, ModuleReport(name, int(mw.rank), out.rank, f.target_norm, err)


def _lycoris_module(
    name: str, mw: Any, rank: int | None, energy: float | None
) -> tuple[Any, ModuleReport]:
    from lorahub.ops.lycoris import to_lora_factors

    f = to_lora_factors(mw, rank, energy)
    out_dim, in_shape = module_shape(mw)
    out = make_lora(f.up, f.down, out_dim, in_shape, out_dtype([(1.0, mw)]))
    s = f.singular_values
    rank_in = int((s > s[0] * 1e-9).sum()) if s.numel() else 0  # the rank of ΔW itself
    return out, ModuleReport(name, rank_in, out.rank, f.target_norm, f.error_norm)
