"""Fuse-when-hot: fold the active set into the base weights, and restore them exactly on change.

Fusing removes the per-step LoRA matmuls; the original weights of the touched layers are kept
so unfusing is a copy, not a subtraction (exact). Whether it pays is measured in
`benchmarks/swap.py`; the engine fuses only when asked (`fuse_after=N` consecutive requests).
"""

from __future__ import annotations

from typing import Any

from lorahub.inference import layers


def delta_of(module: Any, terms: tuple, dense: tuple) -> Any | None:
    """The summed ΔW of a layer's active terms; None when a term cannot be folded exactly."""
    import torch

    weight = module.weight
    delta = torch.zeros_like(weight)
    for down, up, scale, conv in terms:
        if conv is not None and tuple(down.shape[-2:]) != tuple(module.kernel_size):
            return None
        product = up.flatten(1) @ down.flatten(1)
        delta += product.reshape(weight.shape) * scale
    for d, scale in dense:
        delta += d.reshape(weight.shape) * scale
    return delta


class Fuser:
    """Holds the backups of fused layers and their unfused terms."""

    def __init__(self) -> None:
        self.saved: dict[Any, tuple[Any, tuple, tuple]] = {}
        self.signature: tuple | None = None

    @property
    def fused(self) -> bool:
        return self.signature is not None

    def fuse(self, active: dict[Any, tuple[tuple, tuple]], signature: tuple) -> bool:
        """Fold `active` (layer -> (terms, dense)) into the weights; False when not foldable."""
        deltas = {m: delta_of(m, t, d) for m, (t, d) in active.items()}
        if any(d is None for d in deltas.values()):
            return False
        for module, delta in deltas.items():
            terms, dense = active[module]
            self.saved[module] = (module.weight.detach().clone(), terms, dense)
            module.weight.data.add_(delta)
            layers.clear(module)
        self.signature = signature
        return True

    def unfuse(self) -> None:
        """Restore the original weights and re-bind the terms (exact)."""
        for module, (backup, terms, dense) in self.saved.items():
            module.weight.data.copy_(backup)
            module.lora_terms, module.lora_dense = terms, dense
        self.saved.clear()
        self.signature = None
