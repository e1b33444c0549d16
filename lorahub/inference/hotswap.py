"""Compile-safe hot-swapping: fixed-shape zero "slots" on the UNet layers, filled in place.

Before `torch.compile`, every UNet layer any planned adapter targets gets slot buffers of the
maximum rank. A swap copies the new adapters' down/up (scale folded into up) into the slots
and zeroes the rest, so tensor shapes, identities and the graph never change: no recompile.
Mixes fit when their ranks add up to at most the slot rank. UNet-only low-rank LoRA: text
encoder, DoRA and LyCORIS (LoHa/LoKr) adapters are refused in this mode.
"""

from __future__ import annotations

from typing import Any

from lorahub.errors import CapacityError, UnsupportedError
from lorahub.inference import layers
from lorahub.inference.activate import Selection
from lorahub.inference.adapters import CpuAdapter, ModuleIndex, ResidentAdapter
from lorahub.types import AdapterSpec

REFUSED_TYPES = ("dora", "loha", "lokr", "lycoris", "locon-dora")


def check_spec(spec: AdapterSpec) -> None:
    """Refuse adapter types the compiled mode cannot hot-swap (before loading anything)."""
    if spec.network_type in REFUSED_TYPES:
        raise UnsupportedError(
            f"adapter {spec.name} is {spec.network_type}: compiled mode hot-swaps plain UNet "
            "LoRA only (run without --compile)"
        )


def plan_slots(adapters: list[CpuAdapter]) -> tuple[list[str], int]:
    """The union of UNet layers the adapters target and their maximum rank."""
    targets: dict[str, None] = {}
    rank = 0
    for adapter in adapters:
        for term in adapter.terms:
            if term.name.startswith("unet."):
                targets[term.name] = None
                if term.kind == "lora":
                    rank = max(rank, term.a.shape[0])
    return list(targets), rank


class SlotActivator:
    """Activator for compiled pipelines: fills slot buffers instead of binding terms."""

    def __init__(self, index: ModuleIndex, targets: list[str], rank: int):
        self.rank = rank
        self.used: dict[Any, int] = {}
        for name in targets:
            module = index.get(name, "slot plan")
            if not module.__dict__.get("lora_has_slot"):
                layers.add_slot(module, rank)
            self.used[module] = 0
        self.signature: tuple | None = ()
        self.keys: frozenset[str] = frozenset()

    def check(self, adapter: ResidentAdapter) -> None:
        """Refuse an adapter the slots cannot hold."""
        if adapter.components - {"unet"}:
            raise UnsupportedError(
                f"adapter {adapter.name} has text-encoder layers: compiled mode hot-swaps the UNet "
                "only (run without --compile)"
            )
        for e in adapter.entries:
            if e.kind != "lora":
                raise UnsupportedError(
                    f"adapter {adapter.name} has LyCORIS layers: not hot-swappable when compiled"
                )
            if e.module not in self.used:
                raise UnsupportedError(
                    f"adapter {adapter.name} targets a layer outside the compiled slot plan; "
                    "include it in the adapters planned before compiling"
                )
            if e.a.shape[1:] != e.module.lora_slot_down.shape[1:]:
                raise UnsupportedError(
                    f"adapter {adapter.name}: a conv kernel differs from the slot's"
                )

    def activate(self, selections: list[Selection]) -> bool:
        """Fill the slots with `selections`; False when already active."""
        signature = tuple(s.signature for s in selections)
        if signature == self.signature:
            return False
        fills: dict[Any, list[tuple[Any, Any, float]]] = {}
        for sel in selections:
            self.check(sel.adapter)
            for e in sel.adapter.entries:
                fills.setdefault(e.module, []).append(
                    (e.a, e.b, e.scale * sel.factor("unet", e.block))
                )
        for items in fills.values():
            if sum(a.shape[0] for a, _, _ in items) > self.rank:
                raise CapacityError(f"adapter ranks add up to more than the slot rank {self.rank}")
        for module in set(self.used) | set(fills):
            self._fill(module, fills.get(module, []))
        self.signature = signature
        self.keys = frozenset(s.adapter.key for s in selections)
        return True

    def _fill(self, module: Any, items: list[tuple[Any, Any, float]]) -> None:
        """Write items into a module's slot at consecutive ranks; zero what the last fill used."""
        import torch

        down, up = module.lora_slot_down, module.lora_slot_up
        offset = 0
        for a, b, scale in items:
            r = a.shape[0]
            down[offset : offset + r].copy_(a)
            torch.mul(b, scale, out=up[:, offset : offset + r])
            offset += r
        previous = self.used[module]
        if previous > offset:
            down[offset:previous].zero_()
            up[:, offset:previous].zero_()
        self.used[module] = offset

    def forget(self, adapter: ResidentAdapter) -> None:
        """Empty the slots if `adapter` (about to be evicted) is active."""
        if adapter.key in self.keys:
            self.activate([])
