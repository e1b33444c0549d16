"""Reading an adapter file into owned CPU tensors: low-rank terms and dense ΔW terms.

Uses `lorahub.formats.open_adapter` (every supported format, canonical module names). Tensors
are always copied into memory the engine owns, never left as views of a memory-mapped file, so
a file rewritten or truncated on disk cannot change or crash live weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.errors import BadFileError, NotFoundError, UnsupportedError

LORA_ROLES = {".lora_A.weight": "down", ".lora_B.weight": "up"}


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
    if not Path(path).is_file():
        raise NotFoundError(f"adapter file not found: {path}")
    try:
        from lorahub.formats import open_adapter  # type: ignore[attr-defined]
    except ImportError:
        return _read_diffusers(path, dtype)
    reader = open_adapter(path, trust_pickle=trust_pickle)
    return [_term(name, mw, dtype, path) for name, mw in reader.modules()]


def _term(name: str, mw: Any, dtype: Any, path: str) -> CpuTerm:
    """A canonical ModuleWeights as a CpuTerm (LoHa/LoKr become one dense ΔW)."""
    if getattr(mw, "dora_scale", None) is not None:
        raise UnsupportedError(
            f"{Path(path).name}: DoRA adapters are not supported by the engine yet"
        )
    if mw.kind == "lora":
        return CpuTerm(name, "lora", _own(mw.down, dtype), _own(mw.up, dtype), float(mw.scale))
    if mw.kind in ("loha", "lokr"):
        return CpuTerm(name, "dense", _own(mw.delta_weight(), dtype), None, 1.0)
    raise UnsupportedError(f"{Path(path).name}: module kind {mw.kind!r} is not supported")


def _own(tensor: Any, dtype: Any) -> Any:
    """A contiguous copy in `dtype` that shares no memory with the source."""
    return tensor.detach().to(dtype=dtype, copy=True).contiguous()


def _read_diffusers(path: str, dtype: Any) -> list[CpuTerm]:
    """Fallback reader for diffusers/peft-layout files (`<module>.lora_A/B.weight`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = Path(path).read_bytes()
    try:
        tensors = load(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise BadFileError(f"{Path(path).name}: not a readable safetensors file ({exc})") from None
    modules: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        for suffix, role in LORA_ROLES.items():
            if key.endswith(suffix):
                modules.setdefault(key[: -len(suffix)], {})[role] = tensor
    config = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    terms = []
    for name, parts in sorted(modules.items()):
        rank = parts["down"].shape[0]
        alpha = config.get(f"{name.split('.', 1)[0]}.lora_alpha", rank)
        terms.append(
            CpuTerm(
                name, "lora", _own(parts["down"], dtype), _own(parts["up"], dtype), alpha / rank
            )
        )
    return terms


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors byte string."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}
