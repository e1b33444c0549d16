"""Canonical module weights (torch): LoRA/LoCon/DoRA, LoHa and LoKr, and their ΔW."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from lorahub.errors import UnsupportedError

FACTOR_NAMES = (
    "down",
    "up",
    "mid",
    "dora_scale",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
)
KERNEL3_LEAVES = ("conv1", "conv2", "conv", "conv_in", "conv_out")
# Families whose UNet has `use_linear_projection=False`: proj_in/proj_out are 1x1 convs there.
CONV_PROJ_FAMILIES = frozenset({"sd1", "tiny-sd1"})


@dataclass
class ModuleWeights:
    """One module's factors; `delta_weight()` gives ΔW (scale applied) shaped like the base weight.

    `shape` is the base layer's weight shape when known (needed to un-flatten a 3x3 conv LoHa/LoKr).
    """

    kind: str = "lora"
    down: Any = None
    up: Any = None
    mid: Any = None
    alpha: float | None = None
    dora_scale: Any = None
    hada_w1_a: Any = None
    hada_w1_b: Any = None
    hada_w2_a: Any = None
    hada_w2_b: Any = None
    hada_t1: Any = None
    hada_t2: Any = None
    lokr_w1: Any = None
    lokr_w1_a: Any = None
    lokr_w1_b: Any = None
    lokr_w2: Any = None
    lokr_w2_a: Any = None
    lokr_w2_b: Any = None
    lokr_t2: Any = None
    shape: tuple[int, ...] | None = field(default=None, compare=False)

    @property
    def rank(self) -> int | None:
        """The factor rank (None for a LoKr with both Kronecker factors full)."""
        if self.kind == "lora":
            return int(self.down.shape[0])
        if self.kind == "loha":
            return int(self.hada_w1_b.shape[0])
        if self.lokr_w2_b is not None:
            return int(self.lokr_w2_b.shape[0])
        return int(self.lokr_w1_b.shape[0]) if self.lokr_w1_b is not None else None

    @property
    def scale(self) -> float:
        """alpha / rank (1.0 when alpha is None or the rank is undefined)."""
        rank = self.rank
        return 1.0 if self.alpha is None or not rank else float(self.alpha) / rank

    def tensors(self) -> dict[str, Any]:
        """The factor tensors that are set, by role name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in FACTOR_NAMES and getattr(self, f.name) is not None
        }

    def delta_weight(self, base: Any = None) -> Any:
        """ΔW with the scale applied (float32); with DoRA and `base`, the full W' - W."""
        if self.kind == "lora":
            delta = _lora_delta(
                self.down.float(), self.up.float(), None if self.mid is None else self.mid.float()
            )
        elif self.kind == "loha":
            delta = self._loha_delta()
        elif self.kind == "lokr":
            delta = self._lokr_delta()
        else:
            raise UnsupportedError(f"unknown module kind {self.kind!r}")
        delta = self._reshape(delta) * self.scale
        if self.dora_scale is not None and base is not None:
            return _dora_delta(base.float(), delta, self.dora_scale.float())
        return delta

    def fused_delta(self, base: Any, weight: float = 1.0, delta: Any = None) -> Any:
        """The change fusing this module at `weight` makes to `base` (float32, base's shape).

        LoRA/LyCORIS: weight·ΔW. DoRA, as PEFT merges it: m·(W + weight·ΔW)/‖W + weight·ΔW‖ − W
        (the magnitude applies in full; the weight scales the direction's low-rank part).
        `delta` is `delta_weight()` when the caller has it already.
        """
        delta = (self.delta_weight() if delta is None else delta).reshape(base.shape) * weight
        if self.dora_scale is None:
            return delta
        return _dora_delta(base.float(), delta, self.dora_scale.float())

    def _loha_delta(self) -> Any:
        import torch

        f = [t.float() for t in (self.hada_w1_a, self.hada_w1_b, self.hada_w2_a, self.hada_w2_b)]
        if self.hada_t1 is not None and self.hada_t2 is not None:
            eq = "i j k l, j r, i p -> p r k l"
            w1 = torch.einsum(eq, self.hada_t1.float(), f[1], f[0])
            w2 = torch.einsum(eq, self.hada_t2.float(), f[3], f[2])
            return w1 * w2
        return (f[0] @ f[1]) * (f[2] @ f[3])

    def _lokr_delta(self) -> Any:
        import torch

        w1 = (
            self.lokr_w1.float()
            if self.lokr_w1 is not None
            else self.lokr_w1_a.float() @ self.lokr_w1_b.float()
        )
        if self.lokr_w2 is not None:
            w2 = self.lokr_w2.float()
        elif self.lokr_t2 is not None:
            w2 = torch.einsum(
                "i j k l, j r, i p -> p r k l",
                self.lokr_t2.float(),
                self.lokr_w2_b.float(),
                self.lokr_w2_a.float(),
            )
        else:
            w2 = self.lokr_w2_a.float() @ self.lokr_w2_b.float()
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        return torch.kron(w1, w2)

    def _reshape(self, delta: Any) -> Any:
        if (
            self.shape is not None
            and tuple(delta.shape) != tuple(self.shape)
            and delta.numel() == math.prod(self.shape)
        ):
            return delta.reshape(self.shape)
        return delta


def _lora_delta(down: Any, up: Any, mid: Any) -> Any:
    import torch

    if down.dim() == 4:
        out, rank = up.shape[0], up.shape[1]
        if mid is not None:
            return torch.einsum("i j k l, j r, p i -> p r k l", mid, down.flatten(1), up.flatten(1))
        return (up.reshape(out, rank) @ down.flatten(1)).reshape(out, *down.shape[1:])
    return up.reshape(up.shape[0], -1) @ down


def _dora_delta(base: Any, delta: Any, magnitude: Any) -> Any:
    """DoRA: W' = m · (W + ΔW) / ‖W + ΔW‖, as W' - W.

    PEFT keeps one magnitude per output row ([out]); LyCORIS/kohya `dora_scale` one per input
    column ([1, in, ...]); the norm is taken along the matching axis.
    """
    merged = base + delta.reshape(base.shape)
    if magnitude.dim() >= 2 and magnitude.shape[0] == 1:
        norm = (
            merged.transpose(0, 1).flatten(1).norm(dim=1).reshape(1, -1, *([1] * (base.dim() - 2)))
        )
    else:
        norm = merged.flatten(1).norm(dim=1).reshape(-1, *([1] * (base.dim() - 1)))
    return magnitude.reshape(norm.shape) * merged / norm - base


def guess_weight_shape(
    name: str, out: int, inp_flat: int, family: str | None = None
) -> tuple[int, ...] | None:
    """The base weight shape of a conv whose ΔW a LoHa/LoKr stores flattened (3x3 or 1x1), from
    the module's name and the base family; None for a linear layer (or when unknown)."""
    leaf = name.rsplit(".", 1)[-1]
    if not name.startswith("unet."):
        return None
    if leaf in KERNEL3_LEAVES and inp_flat % 9 == 0:
        return (out, inp_flat // 9, 3, 3)
    if leaf == "conv_shortcut" or (
        leaf in ("proj_in", "proj_out") and family in CONV_PROJ_FAMILIES
    ):
        return (out, inp_flat, 1, 1)
    return None
