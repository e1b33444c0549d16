"""Setting the active adapter set of a pipeline: weights, per-component and per-block weights.

A switch rebinds the term tuples of the layers the old and new sets touch, nothing else: no
module tree walk, no tensor copies, no reload. Scales are precomputed here, per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorahub.inference import layers
from lorahub.inference.adapters import ResidentAdapter


@dataclass(frozen=True)
class Selection:
    """One resident adapter with the weights a request gives it."""

    adapter: ResidentAdapter
    weight: float = 1.0
    te_weight: float | None = None
    block_weights: tuple[tuple[str, float], ...] = ()

    def factor(self, component: str, block: str | None) -> float:
        """The multiplier for a layer of `component` in UNet `block`."""
        if component != "unet":
            return self.weight if self.te_weight is None else self.te_weight
        if block is not None and self.block_weights:
            return self.weight * dict(self.block_weights).get(block, 1.0)
        return self.weight

    @property
    def signature(self) -> tuple:
        return (self.adapter.key, self.weight, self.te_weight, self.block_weights)


def selections_for(specs: list[Any], adapters: list[ResidentAdapter]) -> list[Selection]:
    """The Selections of a request: its specs' weights on their resident adapters."""
    return [
        Selection(a, s.weight, s.te_weight, tuple(sorted((s.block_weights or {}).items())))
        for s, a in zip(specs, adapters, strict=True)
    ]


class Activator:
    """Binds the active set's terms to layers; remembers which layers it touched."""

    def __init__(self) -> None:
        self.bound: list[Any] = []
        self.signature: tuple | None = ()
        self.keys: frozenset[str] = frozenset()

    def activate(self, selections: list[Selection]) -> bool:
        """Make `selections` the active set; False when it already was (nothing done)."""
        signature = tuple(s.signature for s in selections)
        if signature == self.signature:
            return False
        terms: dict[Any, list] = {}
        dense: dict[Any, list] = {}
        for sel in selections:
            for e in sel.adapter.entries:
                scale = e.scale * sel.factor(e.component, e.block)
                if e.kind == "lora":
                    terms.setdefault(e.module, []).append((e.a, e.b, scale, e.conv))
                else:
                    dense.setdefault(e.module, []).append((e.a, scale))
        for module in self.bound:
            layers.clear(module)
        for module, items in terms.items():
            module.lora_terms = tuple(items)
        for module, items in dense.items():
            module.lora_dense = tuple(items)
        self.bound = list({**terms, **dense})
        self.signature = signature
        self.keys = frozenset(s.adapter.key for s in selections)
        return True

    def forget(self, adapter: ResidentAdapter) -> None:
        """Unbind everything if `adapter` (about to be evicted) is part of the active set."""
        if adapter.key in self.keys:
            self.activate([])

    def active_terms(self) -> dict[Any, tuple[tuple, tuple]]:
        """Layer -> (lora terms, dense terms) of the active set (for fusing)."""
        return {m: (m.lora_terms, m.lora_dense) for m in self.bound}
