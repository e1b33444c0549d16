"""Merging weighted adapters into one LoRA: cat, svd, linear, ties, dare, with a fidelity report.

Every method streams module by module. For each module the target is the weighted sum
ΔW_target = Σ cᵢ·ΔWᵢ (cᵢ = member weight for the UNet x block weight, or the text weight), and
the report gives ‖ΔW_merged − ΔW_target‖ / ‖ΔW_target‖ per module and overall, measured on the
factors actually written (from the factors, without the full matrix, where the inputs are LoRAs).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lorahub.errors import IncompatibleError, InvalidInputError
from lorahub.ops import inputs as I
from lorahub.ops import lowrank as LR
from lorahub.ops import sparse
from lorahub.ops.report import ModuleReport, OpReport
from lorahub.types import AdapterSpec

METHODS = ("cat", "svd", "linear", "ties", "dare")
DENSE_METHODS = ("ties", "dare")
LYCORIS_METHODS = ("svd", "ties", "dare")
DEFAULT_DENSITY = {"ties": 0.2, "dare": 0.5}
Term = tuple[float, Any]  # (coefficient, ModuleWeights)


@dataclass(frozen=True)
class MergeOptions:
    """How to merge: method, output rank (None: the largest input rank), density, seed."""

    method: str = "svd"
    rank: int | None = None
    density: float | None = None
    seed: int = 0

    def check(self) -> MergeOptions:
        """Validate; fill the paper's default density for ties/dare."""
        if self.method not in METHODS:
            raise InvalidInputError(
                f"unknown merge method {self.method!r}: use {', '.join(METHODS)}"
            )
        if self.rank is not None and self.rank < 1:
            raise InvalidInputError(f"--rank must be at least 1, not {self.rank}")
        if self.rank is not None and self.method in ("cat", "linear"):
            raise InvalidInputError(
                f"--rank does not apply to {self.method} (its rank follows the inputs)"
            )
        density = self.density
        if density is not None and self.method not in DENSE_METHODS:
            raise InvalidInputError("--density applies to ties and dare only")
        if self.method in DENSE_METHODS:
            density = DEFAULT_DENSITY[self.method] if density is None else density
            if not 0 < density <= 1:
                raise InvalidInputError(f"--density must be in (0, 1], not {density}")
        return MergeOptions(self.method, self.rank, density, self.seed)


def merge_adapters(
    specs: Sequence[AdapterSpec],
    dest: str | os.PathLike[str],
    options: MergeOptions,
    *,
    format: str = "diffusers",
    metadata: dict[str, str] | None = None,
    progress: Callable[..., None] | None = None,
) -> OpReport:
    """Merge weighted adapters into one LoRA file at `dest`; returns the fidelity report."""
    from lorahub.formats import write_adapter

    options = options.check()
    family = I.check_specs(specs)
    allowed = (
        ("lora", "locon", "loha", "lokr")
        if options.method in LYCORIS_METHODS
        else ("lora", "locon")
    )
    I.refuse_network(specs, f"merge --method {options.method}", allowed)
    report = OpReport("merge", options.method, [s.to_json() for s in specs], str(dest))
    report.rank, report.density = options.rank, options.density
    report.seed = options.seed if options.method == "dare" else None
    started = time.perf_counter()
    readers = I.open_readers(specs)
    if progress:
        progress(0, total=I.total_modules(readers))
    modules = _stream(specs, readers, options, report, progress)
    meta = {**(metadata or {}), **merge_metadata(report)}
    write_adapter(modules, dest, format=format, metadata=meta, base_family=family)
    report.seconds = time.perf_counter() - started
    return report


def merge_metadata(report: OpReport) -> dict[str, str]:
    """What a merged file says about itself in its safetensors metadata."""
    import json

    return {
        "lorahub_operation": "merge",
        "lorahub_method": str(report.method),
        "lorahub_inputs": json.dumps(report.inputs),
    }


def _stream(
    specs: Sequence[AdapterSpec],
    readers: list[Any],
    options: MergeOptions,
    report: OpReport,
    progress: Callable[..., None] | None,
) -> Iterator[tuple[str, Any]]:
    """Merge module by module, recording each module's error as it goes."""
    lycoris_ok = options.method in LYCORIS_METHODS
    for name, group in I.module_groups(specs, readers):
        for spec, mw in group:
            I.check_module(name, spec, mw, f"merge --method {options.method}", lycoris_ok)
        terms = [(I.coefficient(spec, name), mw) for spec, mw in group]
        out, row = merge_module(name, terms, options)
        report.add(row)
        if progress:
            progress(1, status=name)
        yield name, out


def merge_module(name: str, terms: list[Term], options: MergeOptions) -> tuple[Any, ModuleReport]:
    """Merge one module's weighted terms with `options.method`."""
    out_dim, in_shape = _common_shape(name, terms)
    dtype = out_dtype(terms)
    rank_in = sum(mw.rank or 0 for _, mw in terms)
    if options.method in DENSE_METHODS or not all(_plain(mw) for _, mw in terms):
        up, down, err, tgt = _dense_merge(name, terms, options)
        mw = make_lora(up, down, out_dim, in_shape, dtype)
    else:
        t_up, t_down = LR.stack_factors([(c * mw.scale, *_factors(mw)) for c, mw in terms])
        up, down = _factored_merge(name, terms, t_up, t_down, options)
        mw = make_lora(up, down, out_dim, in_shape, dtype)
        err = LR.factored_error(*_factors(mw), t_up, t_down)
        tgt = LR.factored_norm(t_up, t_down)
    return mw, ModuleReport(name, rank_in, mw.rank, tgt, err)


def _factored_merge(
    name: str, terms: list[Term], t_up: Any, t_down: Any, options: MergeOptions
) -> tuple[Any, Any]:
    """cat / svd / linear on LoRA factors; returns 2-D (up, down) with the scale baked in."""
    if options.method == "cat":
        return t_up, t_down
    if options.method == "svd":
        f = LR.factored_svd(t_up, t_down, rank=options.rank or _default_rank(terms))
        return f.up, f.down
    return _linear(name, terms)


def _linear(name: str, terms: list[Term]) -> tuple[Any, Any]:
    """Combine A and B separately (peft's `linear`): B = Σ√|cs|·Bᵢ, A = Σ sign·√|cs|·Aᵢ."""
    ranks = {mw.rank for _, mw in terms}
    if len(ranks) > 1:
        raise IncompatibleError(
            f"linear merge needs inputs of one rank, but {name} has ranks {sorted(ranks)}; "
            "use --method cat (exact) or svd"
        )
    up = down = None
    for c, mw in terms:
        k = c * mw.scale
        b, a = _factors(mw)
        b, a = b.double() * math.sqrt(abs(k)), a.double() * math.copysign(math.sqrt(abs(k)), k)
        up, down = (b, a) if up is None else (up + b, down + a)
    return up, down


def _dense_merge(
    name: str, terms: list[Term], options: MergeOptions
) -> tuple[Any, Any, float, float]:
    """Build the weighted ΔWs (2-D), combine them, re-factor by truncated SVD; error on the residual."""
    tasks = [LR.to_2d(mw.delta_weight()).float() * c for c, mw in terms]
    target = sum(tasks[1:], tasks[0].clone())
    if options.method == "ties":
        merged = sparse.ties(tasks, options.density or 1.0)
    elif options.method == "dare":
        merged = sparse.dare(tasks, options.density or 1.0, options.seed, name)
    else:
        merged = target
    del tasks
    f = LR.dense_svd(merged, rank=options.rank or _default_rank(terms))
    err = float((f.up.double() @ f.down.double() - target.double()).norm())
    return f.up, f.down, err, float(target.double().norm())


def make_lora(up: Any, down: Any, out_dim: int, in_shape: tuple[int, ...], dtype: Any) -> Any:
    """A LoRA ModuleWeights from 2-D factors (scale 1: alpha = rank), shaped for linear or conv."""
    from lorahub.formats.tensors import ModuleWeights

    r = int(down.shape[0])
    conv = len(in_shape) == 3
    down_t = down.reshape(r, *in_shape).to(dtype).contiguous()
    up_t = (up.reshape(out_dim, r, 1, 1) if conv else up.reshape(out_dim, r)).to(dtype).contiguous()
    return ModuleWeights(kind="lora", down=down_t, up=up_t, alpha=float(r))


def _plain(mw: Any) -> bool:
    return mw.kind == "lora" and mw.mid is None


def _factors(mw: Any) -> tuple[Any, Any]:
    """2-D (up [out, r], down [r, in·k·k]) of a plain LoRA module."""
    return mw.up.reshape(mw.up.shape[0], -1), LR.to_2d(mw.down)


def module_shape(mw: Any) -> tuple[int, tuple[int, ...]]:
    """(out, input shape) of the base layer a module adapts."""
    if _plain(mw):
        return int(mw.up.shape[0]), tuple(int(d) for d in mw.down.shape[1:])
    shape = mw.shape or tuple(mw.delta_weight().shape)
    return int(shape[0]), tuple(int(d) for d in shape[1:])


def _common_shape(name: str, terms: list[Term]) -> tuple[int, tuple[int, ...]]:
    """The module's (out, input shape); IncompatibleError when the inputs disagree."""
    shapes = {module_shape(mw) for _, mw in terms}
    if len(shapes) > 1:
        raise IncompatibleError(f"the inputs disagree on the shape of {name}: {sorted(shapes)}")
    return shapes.pop()


def _default_rank(terms: list[Term]) -> int:
    """The largest input rank of a module (16 when no input has a factor rank)."""
    return max((mw.rank for _, mw in terms if mw.rank), default=16)


def out_dtype(terms: list[Term]) -> Any:
    """float32, unless every input tensor is the same half-precision type."""
    import torch

    dtypes = {t.dtype for _, mw in terms for t in mw.tensors().values()}
    return dtypes.pop() if len(dtypes) == 1 and dtypes != {torch.float64} else torch.float32
