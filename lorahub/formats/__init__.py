"""Reading and writing adapter files: format detection, canonical names, base-family probing.

The header-only API (`read_header`, `inspect_file`, `hash_file`, `AdapterInfo`) needs no torch;
the tensor API (`ModuleWeights`, `open_adapter`, `write_adapter`, `spectrum`) imports torch lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from lorahub.formats.analyze import inspect_file
from lorahub.formats.header import FileHashes, hash_file, read_header
from lorahub.formats.info import BASE_FAMILIES, FORMATS, NETWORK_TYPES, AdapterInfo

_LAZY = {
    "ModuleWeights": "lorahub.formats.tensors",
    "AdapterReader": "lorahub.formats.reader",
    "open_adapter": "lorahub.formats.reader",
    "write_adapter": "lorahub.formats.writer",
    "WRITE_FORMATS": "lorahub.formats.writer",
    "spectrum": "lorahub.formats.spectra",
}

__all__ = [
    "BASE_FAMILIES",
    "FORMATS",
    "NETWORK_TYPES",
    "AdapterInfo",
    "FileHashes",
    "hash_file",
    "inspect_file",
    "read_header",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lorahub.formats' has no attribute {name!r}")
