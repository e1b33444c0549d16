"""TIES and DARE on task vectors (the weighted ΔWs of one module), as their papers define them.

TIES (Yadav et al. 2023): trim each task vector to its largest-magnitude `density` fraction,
elect a sign per entry from the sum of the trimmed vectors, then average only the entries that
agree with the elected sign (the disjoint mean).
DARE (Yu et al. 2023): drop each entry with probability p = 1 − density, rescale the survivors
by 1/(1 − p), then add the task vectors (task arithmetic). Seeded, so a merge is reproducible.

The task vector of a member is its weighted ΔW (coefficient x ΔW), so a negative weight flips a
task the way it does in a plain weighted sum.
"""

from __future__ import annotations

import zlib
from typing import Any


def trim(task: Any, density: float) -> Any:
    """Keep the `density` fraction of entries with the largest magnitude, zero the rest."""
    import torch

    k = int(round(density * task.numel()))
    if k >= task.numel():
        return task
    if k <= 0:
        return torch.zeros_like(task)
    flat = task.reshape(-1)
    idx = flat.abs().topk(k).indices
    out = torch.zeros_like(flat)
    out[idx] = flat[idx]
    return out.reshape(task.shape)


def ties(tasks: list[Any], density: float) -> Any:
    """TIES merge: trim, elect sign (by total mass), disjoint mean."""
    import torch

    trimmed = torch.stack([trim(t, density) for t in tasks])
    elected = torch.where(trimmed.sum(dim=0) >= 0, 1.0, -1.0).to(trimmed.dtype)
    agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
    count = agree.sum(dim=0).clamp_min(1)
    return (trimmed * agree).sum(dim=0) / count


def module_seed(seed: int, module: str, member: int) -> int:
    """A stable per-(module, member) seed, independent of the order modules are visited in."""
    return (seed * 1_000_003 + zlib.crc32(module.encode()) * 31 + member) % (2**63)


def dare(tasks: list[Any], density: float, seed: int, module: str) -> Any:
    """DARE merge: random drop with rescale by 1/density, then sum."""
    import torch

    out = torch.zeros_like(tasks[0])
    for i, task in enumerate(tasks):
        if density >= 1:
            out += task
            continue
        gen = torch.Generator().manual_seed(module_seed(seed, module, i))
        keep = torch.rand(task.shape, generator=gen, dtype=torch.float32) < density
        out += task * keep / density
    return out
