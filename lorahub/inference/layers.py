"""Lightweight LoRA layers: a target Linear/Conv2d gets a subclass whose forward adds active terms.

Installing swaps the module's class in place (`module.__class__`), so parameter names, the
state dict and `isinstance` checks are unchanged and nothing is copied. A layer holds:
- `lora_terms`: a tuple of `(down, up, scale, conv_args)`: the low-rank terms of the active
  adapters (scale = weight x alpha/rank x block weight, precomputed per request);
- `lora_dense`: a tuple of `(delta, scale)`: dense ΔW terms (LoHa, LoKr);
- optional slot buffers `lora_slot_down/up` (compile-safe mode: a fixed-shape term, always on);
- `lora_rows`: per-row terms of a heterogeneous batch (`inference.batched`), keyed by the batch
  length the layer sees: groups of `(spans, terms, dense)`, each span a `(start, stop)` range of
  rows that get those terms; rows in no span get the plain layer only.
Switching adapters rebinds these tuples; with no terms the forward is the plain layer's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lorahub.errors import UnsupportedError

EMPTY: tuple = ()


class LoraLinear(nn.Linear):
    """nn.Linear plus the active LoRA terms."""

    lora_terms: tuple = EMPTY
    lora_dense: tuple = EMPTY
    lora_rows: dict = {}  # noqa: RUF012 (never mutated: bound per batch as a new dict)
    lora_has_slot: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.lora_rows:
            add_rows_linear(self, x, out)
        if self.lora_has_slot:
            out = out + F.linear(F.linear(x, self.lora_slot_down), self.lora_slot_up)
        if self.lora_terms:
            flat = out.view(-1, out.shape[-1])  # fused multiply-add in place: no temporaries
            for down, up, scale, _ in self.lora_terms:
                hidden = F.linear(x, down)
                flat.addmm_(hidden.view(-1, hidden.shape[-1]), up.t(), alpha=scale)
        for delta, scale in self.lora_dense:
            out = out + F.linear(x, delta) * scale
        return out


def row_groups(module: Any, x: torch.Tensor) -> tuple:
    """The row groups bound for a batch of `x.shape[0]` rows (an error if none were planned)."""
    groups = module.lora_rows.get(x.shape[0])
    if groups is None:
        raise RuntimeError(
            f"batched adapters were bound for batches of {sorted(module.lora_rows)} rows, "
            f"but a layer saw {x.shape[0]}"
        )
    return groups


class Stacked(NamedTuple):
    """A Linear layer's per-row low-rank terms stacked for `torch.bmm`: row `first + i` of
    `down` [rows, rank, in] and `up` [rows, out, rank] (scale folded in, zero-padded to one
    rank) serves batch row `start + i` of each `(start, stop, first)` span."""

    spans: tuple[tuple[int, int, int], ...]
    down: torch.Tensor
    up: torch.Tensor


def add_stacked(plan: Stacked, x: torch.Tensor, out: torch.Tensor) -> None:
    """Two batched matmuls per span of rows that have terms (other rows pay nothing)."""
    for start, stop, first in plan.spans:
        rows = stop - start
        xs = x[start:stop].reshape(rows, -1, x.shape[-1])
        o = out[start:stop].view(rows, -1, out.shape[-1])
        hidden = torch.bmm(xs, plan.down[first : first + rows].transpose(1, 2))
        o.baddbmm_(hidden, plan.up[first : first + rows].transpose(1, 2))


def add_rows_linear(module: Any, x: torch.Tensor, out: torch.Tensor) -> None:
    """Add each row group's own terms to its rows of `out`, in place (views: nothing gathered)."""
    groups = row_groups(module, x)
    if isinstance(groups, Stacked):
        add_stacked(groups, x, out)
        return
    for spans, terms, dense in groups:
        for start, stop in spans:
            xs, o = x[start:stop], out[start:stop]
            flat = o.view(-1, o.shape[-1])
            for down, up, scale, _ in terms:
                hidden = F.linear(xs, down)
                flat.addmm_(hidden.reshape(-1, hidden.shape[-1]), up.t(), alpha=scale)
            for delta, scale in dense:
                o.add_(F.linear(xs, delta), alpha=scale)


def add_rows_conv(module: Any, x: torch.Tensor, out: torch.Tensor) -> None:
    """The conv twin of `add_rows_linear`."""
    for spans, terms, dense in row_groups(module, x):
        for start, stop in spans:
            xs, o = x[start:stop], out[start:stop]
            for down, up, scale, (stride, padding) in terms:
                o.add_(F.conv2d(F.conv2d(xs, down, None, stride, padding), up), alpha=scale)
            for delta, scale in dense:
                o.add_(module._conv_forward(xs, delta, None), alpha=scale)


class LoraConv2d(nn.Conv2d):
    """nn.Conv2d plus the active LoRA terms (down uses the base stride/padding, up is 1x1)."""

    lora_terms: tuple = EMPTY
    lora_dense: tuple = EMPTY
    lora_rows: dict = {}  # noqa: RUF012 (never mutated: bound per batch as a new dict)
    lora_has_slot: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv_forward(x, self.weight, self.bias)
        if self.lora_rows:
            add_rows_conv(self, x, out)
        if self.lora_has_slot:
            hidden = F.conv2d(
                x, self.lora_slot_down, None, self.stride, self.padding, self.dilation
            )
            out = out + F.conv2d(hidden, self.lora_slot_up)
        for down, up, scale, (stride, padding) in self.lora_terms:
            out = out + F.conv2d(F.conv2d(x, down, None, stride, padding), up) * scale
        for delta, scale in self.lora_dense:
            out = out + self._conv_forward(x, delta, None) * scale
        return out


WRAPPERS: dict[type, type] = {nn.Linear: LoraLinear, nn.Conv2d: LoraConv2d}


def install(module: nn.Module, name: str) -> nn.Module:
    """Turn a plain Linear/Conv2d into its LoRA subclass (idempotent)."""
    if type(module) in WRAPPERS.values():
        return module
    wrapper = WRAPPERS.get(type(module))
    if wrapper is None:
        raise UnsupportedError(
            f"cannot attach a LoRA to {name} ({type(module).__name__}): only Linear and Conv2d layers"
        )
    module.__class__ = wrapper
    return module


def uninstall(module: nn.Module) -> None:
    """Give a wrapped layer back its plain class (terms and slots dropped)."""
    for plain, wrapper in WRAPPERS.items():
        if type(module) is wrapper:
            clear(module)
            drop_slot(module)
            module.__class__ = plain


def clear(module: Any) -> None:
    """Remove every active term from a wrapped layer."""
    module.lora_terms = EMPTY
    module.lora_dense = EMPTY
    module.lora_rows = {}


def conv_args(module: nn.Module, down: torch.Tensor) -> tuple[Any, Any] | None:
    """(stride, padding) of a conv LoRA's down projection: the base's when kernels match, else 0."""
    if not isinstance(module, nn.Conv2d):
        return None
    if tuple(down.shape[-2:]) == tuple(module.kernel_size):
        return (module.stride, module.padding)
    return (module.stride, 0)


def add_slot(module: Any, rank: int) -> None:
    """Give a wrapped layer zero slot buffers of `rank` (compile-safe hot-swap)."""
    weight = module.weight
    down_shape: tuple[int, ...]
    up_shape: tuple[int, ...]
    if isinstance(module, nn.Conv2d):
        down_shape = (rank, module.in_channels, *module.kernel_size)
        up_shape = (module.out_channels, rank, 1, 1)
    else:
        down_shape, up_shape = (rank, module.in_features), (module.out_features, rank)
    kw = {"device": weight.device, "dtype": weight.dtype}
    module.register_buffer("lora_slot_down", torch.zeros(down_shape, **kw), persistent=False)
    module.register_buffer("lora_slot_up", torch.zeros(up_shape, **kw), persistent=False)
    module.lora_has_slot = True


def drop_slot(module: Any) -> None:
    """Remove slot buffers from a wrapped layer."""
    if module.__dict__.get("lora_has_slot"):
        del module.lora_slot_down, module.lora_slot_up
        module.lora_has_slot = False
