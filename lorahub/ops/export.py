"""Export/convert: rewrite an adapter in the diffusers, kohya or PEFT layout, metadata carried."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from lorahub.errors import InvalidInputError, UnsupportedError
from lorahub.ops import lowrank as LR
from lorahub.ops.report import ModuleReport, OpReport

# entries each writer sets itself, never copied from the source
FORMAT_KEYS = ("lora_adapter_metadata", "format")


def export_adapter(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    format: str,
    metadata: dict[str, str] | None = None,
    verify: bool = True,
    rank: int | None = None,
    energy: float | None = None,
) -> OpReport:
    """Write `path` as `format` at `dest`; with `verify`, read it back and report ΔW differences.

    A LoKr/LoHa adapter becomes a plain LoRA of `rank` / kept `energy` (needed: LyCORIS ΔW are
    high-rank), through resize's exact per-module SVD; the report gives each module's error.
    """
    from lorahub.formats import open_adapter, write_adapter

    reader = open_adapter(path)
    info = reader.info
    if info.network_type in ("loha", "lokr"):
        return _lycoris_to_lora(path, dest, format, info, metadata, rank, energy)
    if rank is not None or energy is not None:
        raise InvalidInputError(
            "--rank/--energy convert LyCORIS adapters; to lower a LoRA's rank use `lorahub resize`"
        )
    started = time.perf_counter()
    carried = {k: v for k, v in info.metadata.items() if k not in FORMAT_KEYS}
    meta = {**carried, **(metadata or {}), "lorahub_converted_from": info.format}
    write_adapter(
        _modules(reader), dest, format=format, metadata=meta, base_family=info.base_family
    )
    report = OpReport("export", format, [{"name": str(path), "format": info.format}], str(dest))
    if verify:
        _verify(reader, dest, report)
    report.seconds = time.perf_counter() - started
    return report


def _lycoris_to_lora(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    format: str,
    info: Any,
    metadata: dict[str, str] | None,
    rank: int | None,
    energy: float | None,
) -> OpReport:
    from lorahub.ops.resize import resize_adapter

    if rank is None and energy is None:
        raise InvalidInputError(
            f"{os.path.basename(str(path))} is a LyCORIS {info.network_type}: exporting it as a "
            "LoRA needs --rank R or --energy E (e.g. 0.99); the error is reported per module"
        )
    meta = {
        **(metadata or {}),
        "lorahub_operation": "export",
        "lorahub_converted_from": f"{info.format}-{info.network_type}",
    }
    report = resize_adapter(path, dest, rank=rank, energy=energy, format=format, metadata=meta)
    report.operation, report.method = "export", format
    report.inputs = [{"name": str(path), "format": info.format, "network": info.network_type}]
    return report


def _modules(reader: Any) -> Iterator[tuple[str, Any]]:
    for name, mw in reader.modules():
        if mw.dora_scale is not None and mw.kind != "lora":
            raise UnsupportedError(f"export cannot write {name} ({mw.kind} with DoRA)")
        yield name, mw


def _verify(reader: Any, dest: str | os.PathLike[str], report: OpReport) -> None:
    """Read the written file back and compare each module's ΔW with the source's."""
    from lorahub.formats import open_adapter

    out = open_adapter(dest)
    names = set(out.module_names())
    for name, mw in reader.modules():
        if name not in names:
            report.warnings.append(f"{name} did not survive the export")
            continue
        new = out.module(name)
        a = (mw.scale * _up(mw), LR.to_2d(mw.down))
        b = (new.scale * _up(new), LR.to_2d(new.down))
        err = LR.factored_error(*b, *a)
        report.add(
            ModuleReport(name, int(mw.rank or 0), int(new.rank or 0), LR.factored_norm(*a), err)
        )


def _up(mw: Any) -> Any:
    return mw.up.reshape(mw.up.shape[0], -1)
