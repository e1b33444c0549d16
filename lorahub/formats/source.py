"""Where an adapter's tensors live: a safetensors file, a PEFT folder, or a trusted pickle."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.errors import BadFileError, NotFoundError
from lorahub.formats import untrusted

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # an adapter_config.json is a few KB

FOLDER_FILES = (
    "adapter_model.safetensors",
    "pytorch_lora_weights.safetensors",
    "adapter_model.bin",
)


@dataclass(frozen=True)
class Source:
    """The user's path, the tensor file behind it and the PEFT config beside it (if any)."""

    path: Path
    file: Path
    peft_config: dict[str, Any] | None


def resolve_source(path: str | os.PathLike[str]) -> Source:
    """Find the tensor file of `path` (a file or a PEFT/diffusers folder) and its sidecar config."""
    path = Path(path).expanduser()
    if not path.exists():
        if path.is_symlink():
            raise NotFoundError(f"{path} is a symbolic link to nothing (missing target or a loop)")
        raise NotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        file = next((path / n for n in FOLDER_FILES if (path / n).is_file()), None)
        if file is None:
            found = sorted(path.glob("*.safetensors"))
            if len(found) != 1:
                raise BadFileError(f"{path} is a folder without adapter_model.safetensors")
            file = found[0]
        return Source(path.resolve(), file.resolve(), _read_config(path / "adapter_config.json"))
    sidecars = (
        path.with_name(f"{path.stem}.adapter_config.json"),
        path.with_name("adapter_config.json"),
    )
    if not path.is_file():
        raise BadFileError(f"{path} is not a regular file ({special_kind(path)})")
    config = next((_read_config(p) for p in sidecars if p.is_file()), None)
    return Source(path.resolve(), path.resolve(), config)


def special_kind(path: Path) -> str:
    """What a non-regular file is, in words."""
    import stat

    mode = path.stat().st_mode
    for test, word in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return word
    return "a special file"


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise BadFileError(f"{path.name} beside the adapter is over {MAX_CONFIG_BYTES} bytes")
        data = untrusted.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        data = None
    if data is None:
        raise BadFileError(f"{path.name} beside the adapter is not valid JSON")
    return data if isinstance(data, dict) else None


def load_pickle(path: Path) -> dict[str, Any]:
    """Load a trusted pickle state dict with `torch.load(weights_only=True)`."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds; the user needs one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
        why = next((line for line in lines if "unsupported global" in line.lower()), lines[0])
        if "Weights only load failed" in why:  # torch's advice to retry unsafely is not ours
            why = "it holds objects other than tensors"
        raise BadFileError(
            f"{path.name} could not be loaded as a weights-only pickle (refused, not run): {why}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise BadFileError(f"{path.name} does not hold a state dict")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise BadFileError(f"{path.name} holds no tensors")
    return tensors


def pseudo_header(tensors: dict[str, Any]) -> dict[str, Any]:
    """A safetensors-like header (dtype, shape) for tensors loaded from a pickle."""
    names = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
    return {
        k: {
            "dtype": names.get(str(t.dtype).removeprefix("torch."), str(t.dtype)),
            "shape": list(t.shape),
            "data_offsets": [0, 0],
        }
        for k, t in tensors.items()
    }
