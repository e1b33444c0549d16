"""Per-module singular values of ΔW from its low-rank factors, and effective ranks."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lorahub.formats.reader import open_adapter
from lorahub.formats.tensors import ModuleWeights

MAX_VALUES = 64


def singular_values(m: ModuleWeights) -> Any:
    """Singular values of ΔW (scale applied); for LoRA via QR of the factors, never the full ΔW."""
    import torch

    if m.kind == "lora" and m.mid is None:
        down = m.down.float().flatten(1)  # [r, in·k·k]
        up = m.up.float().flatten(1)  # [out, r]
        _, r_up = torch.linalg.qr(up)  # up = Qu·Ru
        _, r_down = torch.linalg.qr(down.T)  # downᵀ = Qd·Rd
        return torch.linalg.svdvals(r_up @ r_down.T) * abs(m.scale)
    delta = m.delta_weight()
    return torch.linalg.svdvals(delta.flatten(1))


def effective_rank(values: Any, energy: float) -> int:
    """Smallest k whose top-k singular values hold `energy` of the squared total."""
    import torch

    sq = values.double() ** 2
    total = float(sq.sum())
    if total == 0.0:
        return 0
    cum = torch.cumsum(sq, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype)).item()) + 1


def spectrum(
    path: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    progress: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """`{"modules": {name: {...}}, "summary": {...}}` with singular values and effective ranks."""
    out: dict[str, dict[str, Any]] = {}
    with open_adapter(path, trust_pickle=trust_pickle) as reader:
        names = reader.module_names()
        for name, m in reader.modules():
            s = singular_values(m)
            out[name] = {
                "rank": m.rank,
                "singular_values": [round(float(v), 6) for v in s[:MAX_VALUES]],
                "effective_rank_90": effective_rank(s, 0.90),
                "effective_rank_99": effective_rank(s, 0.99),
                "norm": float((s.double() ** 2).sum().sqrt()),
            }
            if progress:
                progress(1, total=len(names), status=name)
    return {"modules": out, "summary": _summary(out)}


def _summary(modules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not modules:
        return {"modules": 0}
    e90 = [m["effective_rank_90"] for m in modules.values()]
    e99 = [m["effective_rank_99"] for m in modules.values()]
    return {
        "modules": len(modules),
        "mean_effective_rank_90": sum(e90) / len(e90),
        "mean_effective_rank_99": sum(e99) / len(e99),
        "max_effective_rank_99": max(e99),
    }
