"""Loading base pipelines: device and dtype choice, tiny ids, any local folder or Hub id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.errors import NotFoundError
from lorahub.tiny import resolve_base


def pick_device(device: str | None = None) -> str:
    """The device to run on: the one asked for, else CUDA where present, else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str | None = None) -> Any:
    """The torch dtype: the one asked for, else fp16 on CUDA (bf16 where supported), fp32 on CPU."""
    import torch

    if dtype:
        names = {
            "fp32": torch.float32,
            "float32": torch.float32,
            "fp16": torch.float16,
            "float16": torch.float16,
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
        }
        return names[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quiet_diffusers() -> None:
    """Silence the loaders' progress bars and info chatter (the CLI shows its own)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(base: str, *, device: str | None = None, dtype: str | None = None) -> Any:
    """Load a diffusers pipeline (`tiny`, `tiny-sdxl`, a local folder or a Hub id) on a device."""
    from diffusers import DiffusionPipeline

    quiet_diffusers()
    source = resolve_base(base)
    if Path(source).exists() and not (Path(source) / "model_index.json").exists():
        raise NotFoundError(f"{base}: not a diffusers pipeline folder (no model_index.json)")
    dev = pick_device(device)
    kwargs: dict[str, Any] = {_dtype_kwarg(): pick_dtype(dev, dtype)}
    if _needs_safety_checker_off(source):
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:  # diffusers raises ValueError for some bad folders/ids
        raise NotFoundError(
            f"cannot load base model {base!r}: {str(exc).splitlines()[0]}"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


def _dtype_kwarg() -> str:
    """diffusers renamed `torch_dtype` to `dtype` in 0.36; pass whichever this version takes."""
    import diffusers
    from packaging.version import Version

    return "dtype" if Version(diffusers.__version__) >= Version("0.36") else "torch_dtype"


def _needs_safety_checker_off(source: str) -> bool:
    index = Path(source) / "model_index.json"
    return index.exists() and '"safety_checker"' in index.read_text()


def base_family_of(base: str) -> str | None:
    """The base family for a tiny id; None for others (decided from the model by callers)."""
    return families.of_base_id(base)


def model_name(base: str) -> str:
    """A registry model name for a base: `tiny`, a folder's name, or a Hub id with `--` for `/`."""
    path = Path(base).expanduser()
    text = path.name if path.exists() else base
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text).strip("-.") or "base"
