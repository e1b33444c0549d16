"""`open_adapter`: stream an adapter's modules as canonical `ModuleWeights` (safetensors only)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from lorahub.errors import NotFoundError, UnsupportedError
from lorahub.formats.analyze import Analysis, analyze, build_info
from lorahub.formats.info import AdapterInfo
from lorahub.formats.tensors import ModuleWeights, guess_weight_shape


class AdapterReader:
    """Reads one module at a time from an adapter file; `info` is its header-only AdapterInfo."""

    def __init__(self, analysis: Analysis):
        self._a = analysis
        self.info: AdapterInfo = build_info(analysis)
        self._handle: Any = None

    def __enter__(self) -> AdapterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the open file."""
        self._handle = None

    def module_names(self) -> list[str]:
        """Canonical module names, in file order."""
        return list(self._a.layout.modules)

    def module(self, name: str) -> ModuleWeights:
        """The weights of one module (read from disk now)."""
        entry = self._a.layout.modules.get(name)
        if entry is None:
            raise NotFoundError(f"{self.info.path} has no module {name!r}")
        kwargs = {role: self._tensor(key) for role, key in entry.keys.items() if role != "alpha"}
        dims = self._a.dims.get(name)
        shape = None
        if dims is not None and entry.kind != "lora":
            shape = guess_weight_shape(name, dims.out, dims.inp, self._a.family[0])
        return ModuleWeights(kind=entry.kind, alpha=self._a.alphas.get(name), shape=shape, **kwargs)

    def modules(self) -> Iterator[tuple[str, ModuleWeights]]:
        """Yield (name, weights) module by module, so a whole adapter never sits in memory."""
        for name in self.module_names():
            yield name, self.module(name)

    def _tensor(self, key: str) -> Any:
        if self._a.tensors is not None:
            return self._a.tensors[key]
        if self._handle is None:
            from safetensors import safe_open

            self._handle = safe_open(str(self._a.source.file), framework="pt", device="cpu")
        return self._handle.get_tensor(key)


def open_adapter(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> AdapterReader:
    """Open an adapter for reading its modules; refuses formats it cannot name modules for."""
    a = analyze(path, trust_pickle=trust_pickle)
    if a.layout.format == "cloneofsimo":
        raise UnsupportedError(
            f"{a.source.path.name} uses the cloneofsimo positional format (unet:0:up): its modules "
            "are known only by injection order, so lorahub can inspect it but not load its modules"
        )
    if a.layout.format == "unknown":
        raise UnsupportedError(f"{a.source.path.name}: no LoRA modules recognised (format unknown)")
    return AdapterReader(a)
