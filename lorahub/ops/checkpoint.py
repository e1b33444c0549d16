"""A full model's weights read tensor by tensor under canonical module names (`unet.…`,
`text_encoder.text_model.…`): a diffusers pipeline folder, or a single-file checkpoint in the
original (LDM/SGM) layout that A1111 and ComfyUI load. Only Linear and Conv2d weights are
listed (what a LoRA can adapt); safetensors are read lazily, pickles only when trusted."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorahub.errors import InvalidInputError, NotFoundError
from lorahub.formats.header import is_pickle, refuse_pickle
from lorahub.formats.layout import canonical_te_path
from lorahub.formats.names import sgm_to_diffusers

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
# single-file checkpoints: key prefix -> component (SD 1.x, SDXL's first encoder)
SINGLE_FILE_PREFIXES = {
    "model.diffusion_model.": "unet",
    "cond_stage_model.transformer.": "text_encoder",
    "conditioner.embedders.0.transformer.": "text_encoder",
}
# SDXL's OpenCLIP bigG keeps fused in_proj weights: no diffusers module matches them one to one
UNMAPPED_PREFIXES = ("conditioner.embedders.1.model.", "cond_stage_model.model.")
Loader = Callable[[], Any]


def local_checkpoint(ref: str) -> Path:
    """A checkpoint on disk: a tiny id's built folder, a path, or a Hub id's snapshot (weights
    of the LoRA-able components only)."""
    from lorahub.tiny import is_tiny, resolve_base

    if is_tiny(ref):
        return Path(resolve_base(ref))
    path = Path(ref).expanduser()
    if path.exists() or "/" not in ref or ref.count("/") > 1 or ref.startswith((".", "~")):
        return path
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json", *(f"{c}/*" for c in COMPONENTS)]
    try:
        return Path(snapshot_download(ref, allow_patterns=patterns))
    except Exception as exc:  # the client raises many kinds; one line for the user
        raise NotFoundError(
            f"cannot fetch {ref!r} from the Hub: {str(exc).splitlines()[0]}"
        ) from None


class Checkpoint:
    """`shapes` (canonical module -> weight shape) and `tensor(name)`, one module at a time."""

    def __init__(self, source: str | os.PathLike[str], *, trust_pickle: bool = False):
        self.source = Path(source).expanduser()
        self.trust_pickle = trust_pickle
        self.shapes: dict[str, tuple[int, ...]] = {}
        # what the layout has but lorahub cannot map (said, not hidden)
        self.skipped: list[str] = []
        # biases, norms, embeddings: no LoRA can carry them
        self.others: dict[str, Loader] = {}
        self._loaders: dict[str, Loader] = {}
        if self.source.is_dir():
            self._read_folder()
        elif self.source.is_file():
            self._read_single_file()
        else:
            raise NotFoundError(f"no such checkpoint: {source}")
        if not self.shapes:
            raise InvalidInputError(
                f"{source}: no Linear/Conv weights found (not a model checkpoint?)"
            )

    def tensor(self, name: str) -> Any:
        """The weight of module `name` (loaded now)."""
        return self._loaders[name]()

    def _read_folder(self) -> None:
        if not (self.source / "model_index.json").exists():
            raise InvalidInputError(
                f"{self.source}: not a diffusers pipeline folder (no model_index.json)"
            )
        for component in COMPONENTS:
            folder = self.source / component
            files = _weight_files(folder) if folder.is_dir() else []
            for file in files:
                for key, (shape, loader) in self._entries(file).items():
                    self._add(f"{component}.{key}", shape, loader)

    def _read_single_file(self) -> None:
        entries = self._entries(self.source)
        layers = _layers_per_block(entries)
        for key, (shape, loader) in entries.items():
            name = single_file_name(key, layers)
            if name is None:
                if key.startswith(UNMAPPED_PREFIXES):
                    self.skipped.append(key)
                continue
            self._add(name, shape, loader)
        if self.skipped:
            self.skipped = ["text_encoder_2 (OpenCLIP, fused in_proj): not extracted"]

    def _add(self, key: str, shape: tuple[int, ...], loader: Loader) -> None:
        module, _, leaf = key.rpartition(".")
        if leaf != "weight" or len(shape) not in (2, 4) or _is_embedding(module):
            self.others[canonical_te_path(key)] = loader
            return
        self.shapes[canonical_te_path(module)] = shape
        self._loaders[canonical_te_path(module)] = loader

    def _entries(self, file: Path) -> dict[str, tuple[tuple[int, ...], Loader]]:
        """key -> (shape, loader) of one weights file; a pickle only when trusted."""
        if is_pickle(file):
            if not self.trust_pickle:
                refuse_pickle(file)
            from lorahub.formats.source import load_pickle

            data = load_pickle(file)
            data = data.get("state_dict", data) if isinstance(data, dict) else data
            return {k: (tuple(v.shape), _const(v)) for k, v in data.items() if hasattr(v, "shape")}
        from safetensors import safe_open

        handle = safe_open(str(file), "pt")
        return {
            k: (tuple(handle.get_slice(k).get_shape()), _lazy(handle, k)) for k in handle.keys()
        }


def _const(value: Any) -> Loader:
    return lambda: value


def _lazy(handle: Any, key: str) -> Loader:
    return lambda: handle.get_tensor(key)


def _weight_files(folder: Path) -> list[Path]:
    """A component's weight files: safetensors first (sharded ones too), else pickles; the
    non-variant files when both a plain and an `.fp16` variant are there."""
    for pattern in ("*.safetensors", "*.bin"):
        files = sorted(folder.glob(pattern))
        plain = [f for f in files if not re.search(r"\.(fp16|bf16|fp32)\.", f.name)]
        if plain or files:
            return plain or files
    return []


def _is_embedding(module: str) -> bool:
    """Token/position embedding tables are 2-D but not Linear layers."""
    return module.rsplit(".", 1)[-1].endswith(("embedding", "embeddings"))


def _layers_per_block(entries: dict[str, Any]) -> int:
    """Resnets per down block of an LDM UNet: the first downsampler sits at input_blocks.(n+1)."""
    ops = [
        int(m.group(1))
        for k in entries
        if (m := re.match(r"model\.diffusion_model\.input_blocks\.(\d+)\.0\.op\.", k))
    ]
    return min(ops) - 1 if ops else 2


def single_file_name(key: str, layers_per_block: int = 2) -> str | None:
    """`model.diffusion_model.input_blocks.1.1.proj_in.weight` -> `unet.down_blocks.0.attentions.0.proj_in.weight`."""
    for prefix, component in SINGLE_FILE_PREFIXES.items():
        if key.startswith(prefix):
            path = key[len(prefix) :]
            if component == "unet":
                module, _, leaf = path.rpartition(".")
                path = f"{sgm_to_diffusers(module, layers_per_block)}.{leaf}"
            return f"{component}.{path}"
    return None
