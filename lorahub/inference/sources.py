"""Reading an adapter file into owned CPU tensors: low-rank terms and dense ΔW terms.

Uses `lorahub.formats.open_adapter` (every supported format, canonical module names). Tensors
are always copied into memory the engine owns, never left as views of a memory-mapped file, so
a file rewritten or truncated on disk cannot change or crash live weights.

Limit: LoHa, LoKr and Tucker LoCon modules are held as one dense ΔW per layer (the layer's own
size), not as their factors. A LoKr or LoHa covering a whole UNet therefore costs about the UNet's
size in memory (≈1.7 GB fp16 for SD 1.5) in each cache tier. The caches' byte limits count it: one
larger than the resident limit is refused with a CapacityError (after being expanded once on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.errors import NotFoundError, UnsupportedError


@dataclass
class CpuTerm:
    """One module of an adapter: `kind` "lora" (a=down, b=up) or "dense" (a=ΔW); scale = alpha/rank."""

    name: str
    kind: str
    a: Any
    b: Any
    scale: float

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.a, self.b) if t is not None)


def read_terms(path: str, dtype: Any, *, trust_pickle: bool = False) -> list[CpuTerm]:
    """Every module of the adapter at `path` as owned CPU tensors in `dtype`."""
    from lorahub.formats import open_adapter

    if not Path(path).is_file():
        raise NotFoundError(f"adapter file not found: {path}")
    with open_adapter(path, trust_pickle=trust_pickle) as reader:
        return [_term(name, mw, dtype, path) for name, mw in reader.modules()]


def _term(name: str, mw: Any, dtype: Any, path: str) -> CpuTerm:
    """A canonical ModuleWeights as a CpuTerm (LoHa/LoKr/Tucker LoCon become one dense ΔW)."""
    if mw.dora_scale is not None:
        raise UnsupportedError(
            f"{Path(path).name}: DoRA adapters are not supported by the engine yet"
        )
    if mw.kind == "lora" and mw.mid is None:
        return CpuTerm(name, "lora", _own(mw.down, dtype), _own(mw.up, dtype), float(mw.scale))
    if mw.kind in ("lora", "loha", "lokr"):
        return CpuTerm(name, "dense", _own(mw.delta_weight(), dtype), None, 1.0)
    raise UnsupportedError(f"{Path(path).name}: module kind {mw.kind!r} is not supported")


def _own(tensor: Any, dtype: Any) -> Any:
    """A contiguous copy in `dtype` that shares no memory with the source."""
    return tensor.detach().to(dtype=dtype, copy=True).contiguous()
