"""Extracting a LoRA from two checkpoints: ΔW = W_tuned − W_base per module, truncated SVD.

What kohya's `extract_lora_from_models.py` does, streamed: one module of each checkpoint is in
memory at a time. Linear layers become LoRA modules and convs LoCon ones (3x3 down, 1x1 up);
modules whose weights did not change are skipped. Each module's relative error
‖ΔW_r − ΔW‖ / ‖ΔW‖ is measured on the written factors and reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorahub import families
from lorahub.errors import IncompatibleError, InvalidInputError
from lorahub.ops import lowrank as LR
from lorahub.ops.checkpoint import Checkpoint
from lorahub.ops.merge import make_lora
from lorahub.ops.report import ModuleReport, OpReport
from lorahub.ops.resize import check_resize

DEFAULT_MIN_CHANGE = 1e-6  # ‖ΔW‖ / ‖W_base‖ at or below which a module counts as unchanged


@dataclass(frozen=True)
class ExtractOptions:
    """The rank to keep per module (a fixed `rank`, or the one keeping `energy` of ‖ΔW‖²)."""

    rank: int | None = None
    energy: float | None = None
    min_change: float = DEFAULT_MIN_CHANGE

    def check(self) -> ExtractOptions:
        check_resize(self.rank, self.energy)
        if not self.min_change >= 0:
            raise InvalidInputError(f"--min-change must be >= 0, not {self.min_change}")
        return self


def extract_lora(
    base: str | os.PathLike[str],
    tuned: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    format: str = "diffusers",
    trust_pickle: bool = False,
    progress: Callable[..., None] | None = None,
) -> OpReport:
    """Write the LoRA that turns `base` into `tuned` (diffusers folders or single files) at `dest`."""
    from lorahub.formats import write_adapter

    options = options.check()
    started = time.perf_counter()
    b = Checkpoint(base, trust_pickle=trust_pickle)
    t = Checkpoint(tuned, trust_pickle=trust_pickle)
    check_same_architecture(b, t)
    family = checkpoint_family(b)
    report = OpReport(
        "extract",
        "svd",
        [{"name": str(base), "role": "base"}, {"name": str(tuned), "role": "tuned"}],
        str(dest),
        rank=options.rank,
        energy=options.energy,
    )
    if progress:
        progress(0, total=len(b.shapes))
    modules, unchanged = [], 0
    for name in b.shapes:
        out = _extract_module(name, b.tensor(name), t.tensor(name), options, report)
        unchanged += out is None
        if out is not None:
            modules.append((name, out))
        if progress:
            progress(1, status=name)
    if not modules:
        raise InvalidInputError(
            f"nothing to extract: every module of {tuned} equals {base} "
            f"(relative change <= {options.min_change:g})"
        )
    report.warnings += b.skipped + ([f"{unchanged} unchanged modules skipped"] if unchanged else [])
    lost = changed_others(b, t)
    if lost:
        report.warnings.append(
            f"{len(lost)} changed tensors a LoRA cannot carry (biases, norms, embeddings) are "
            f"not in the result, e.g. {', '.join(lost[:3])}"
        )
    meta = {"lorahub_operation": "extract", "lorahub_base": str(base), "lorahub_tuned": str(tuned)}
    write_adapter(modules, dest, format=format, metadata=meta, base_family=family)
    report.seconds = time.perf_counter() - started
    return report


def check_same_architecture(base: Checkpoint, tuned: Checkpoint) -> None:
    """One line naming the first module the two checkpoints disagree on."""
    for name in sorted(set(base.shapes) | set(tuned.shapes)):
        a, b = base.shapes.get(name), tuned.shapes.get(name)
        if a != b:
            what = (
                f"only in {'the tuned' if a is None else 'the base'} checkpoint"
                if a is None or b is None
                else f"base {list(a)} vs tuned {list(b)}"
            )
            raise IncompatibleError(
                f"base and tuned are different architectures: first mismatch at {name} ({what})"
            )


def changed_others(base: Checkpoint, tuned: Checkpoint) -> list[str]:
    """Biases, norms and embeddings that differ between the two (a LoRA cannot carry them)."""
    import torch

    return [
        key
        for key in sorted(base.others.keys() & tuned.others.keys())
        if not torch.equal(base.others[key](), tuned.others[key]())
    ]


def checkpoint_family(ckpt: Checkpoint) -> str | None:
    """The family from the UNet's cross-attention width (the rule adapters are probed by)."""
    widths = [s[1] for n, s in ckpt.shapes.items() if n.endswith("attn2.to_k")]
    return families.by_cross_width(widths[0]) if widths else None


def _extract_module(
    name: str, w_base: Any, w_tuned: Any, options: ExtractOptions, report: OpReport
) -> Any:
    """The LoRA/LoCon of one module's change, or None when it did not change."""
    import torch

    from lorahub.models import pick_device

    device = pick_device()
    base = w_base.to(device, torch.float32)
    delta = w_tuned.to(device, torch.float32) - base
    norm = float(delta.double().norm())
    if norm <= options.min_change * float(base.double().norm()):
        return None
    f = LR.dense_svd(LR.to_2d(delta), rank=options.rank, energy=options.energy)
    dtype = w_tuned.dtype if w_tuned.dtype in (torch.float16, torch.bfloat16) else torch.float32
    shape = tuple(int(d) for d in delta.shape)
    out = make_lora(f.up.cpu(), f.down.cpu(), shape[0], shape[1:], dtype)
    written = LR.to_2d(out.delta_weight()).to(device) - LR.to_2d(delta)
    report.add(
        ModuleReport(
            name, min(LR.to_2d(delta).shape), out.rank, norm, float(written.double().norm())
        )
    )
    return out
