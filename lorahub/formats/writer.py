"""`write_adapter`: canonical LoRA modules -> a diffusers, kohya or PEFT file (atomically)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.errors import InvalidInputError, UnsupportedError
from lorahub.fileio import atomic_dir, atomic_path, atomic_write_bytes
from lorahub.formats.header import canonicalize_header
from lorahub.formats.names import canonical_to_kohya
from lorahub.formats.tensors import ModuleWeights

WRITE_FORMATS = ("diffusers", "kohya", "peft")


def write_adapter(
    modules: Iterable[tuple[str, ModuleWeights]],
    path: str | os.PathLike[str],
    *,
    format: str = "diffusers",
    metadata: dict[str, str] | None = None,
    base_family: str | None = None,
) -> Path:
    """Write LoRA modules (canonical names) in `format`; returns the path written."""
    if format not in WRITE_FORMATS:
        raise InvalidInputError(
            f"unknown adapter format {format!r}: use one of {', '.join(WRITE_FORMATS)}"
        )
    items = list(modules)
    if not items:
        raise InvalidInputError("no modules to write")
    for name, m in items:
        if m.kind != "lora":
            raise UnsupportedError(
                f"{name} is a {m.kind} module: only LoRA modules can be written as {format}"
            )
        if m.mid is not None:
            raise UnsupportedError(
                f"{name} has a Tucker mid factor (LoCon CP): not supported for writing"
            )
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    if base_family:
        meta.setdefault("lorahub.base_family", base_family)
    writer = {"diffusers": _write_diffusers, "kohya": _write_kohya, "peft": _write_peft}[format]
    return writer(items, Path(path), meta, base_family)


def _alpha(m: ModuleWeights) -> float:
    return float(m.alpha) if m.alpha is not None else float(m.rank or 1)


def _save(tensors: dict[str, Any], dest: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    with atomic_path(dest, suffix=".safetensors") as tmp:
        save_file(
            {k: v.detach().contiguous().clone() for k, v in tensors.items()},
            str(tmp),
            metadata=metadata,
        )
        canonicalize_header(tmp)
    return dest


def _check_dora(name: str, m: ModuleWeights, peft_style: bool) -> None:
    if m.dora_scale is None:
        return
    lycoris_style = m.dora_scale.dim() >= 2 and m.dora_scale.shape[0] == 1
    if lycoris_style == peft_style:
        raise UnsupportedError(
            f"{name}: DoRA magnitudes in the {'kohya' if lycoris_style else 'PEFT'} convention cannot be written in this format"
        )


def lora_config(items: list[tuple[str, ModuleWeights]]) -> dict[str, Any]:
    """A PEFT LoraConfig dict (r, lora_alpha, patterns, targets) for modules of one component."""
    ranks = {path: int(m.rank or 0) for path, m in items}
    alphas = {path: _alpha(m) for path, m in items}
    r = Counter(ranks.values()).most_common(1)[0][0]
    alpha = Counter(alphas.values()).most_common(1)[0][0]
    return {
        "r": r,
        "lora_alpha": alpha,
        "rank_pattern": {p: v for p, v in ranks.items() if v != r},
        "alpha_pattern": {p: v for p, v in alphas.items() if v != alpha},
        "target_modules": sorted(ranks),
        "use_dora": any(m.dora_scale is not None for _, m in items),
        "lora_bias": False,
    }


def _by_component(
    items: list[tuple[str, ModuleWeights]],
) -> dict[str, list[tuple[str, ModuleWeights]]]:
    out: dict[str, list[tuple[str, ModuleWeights]]] = {}
    for name, m in items:
        component, _, path = name.partition(".")
        if not path:
            raise InvalidInputError(f"module name {name!r} is not canonical (component.path)")
        out.setdefault(component, []).append((native_te_path(component, path), m))
    return out


def native_te_path(component: str, path: str) -> str:
    """A text-encoder path as the installed transformers names it (diffusers/peft keys must match).

    Canonical names keep CLIP's `text_model.` level (kohya/A1111 and older files use it);
    transformers 5 removed that level, and diffusers then refuses keys that still carry it.
    """
    if (
        component.startswith("text_encoder")
        and path.startswith("text_model.")
        and not _clip_has_text_model()
    ):
        return path[len("text_model.") :]
    return path


def _clip_has_text_model() -> bool:
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__).major < 5


def _write_diffusers(
    items: list[tuple[str, ModuleWeights]], dest: Path, meta: dict[str, str], family: str | None
) -> Path:
    tensors: dict[str, Any] = {}
    adapter_meta: dict[str, Any] = {}
    for component, group in _by_component(items).items():
        for path, m in group:
            _check_dora(f"{component}.{path}", m, peft_style=True)
            tensors[f"{component}.{path}.lora_A.weight"] = m.down
            tensors[f"{component}.{path}.lora_B.weight"] = m.up
            if m.dora_scale is not None:
                tensors[f"{component}.{path}.lora_magnitude_vector"] = m.dora_scale
        adapter_meta.update({f"{component}.{k}": v for k, v in lora_config(group).items()})
    meta = {
        "format": "pt",
        **meta,
        "lora_adapter_metadata": json.dumps(adapter_meta, indent=2, sort_keys=True),
    }
    return _save(tensors, dest, meta)


def _write_kohya(
    items: list[tuple[str, ModuleWeights]], dest: Path, meta: dict[str, str], family: str | None
) -> Path:
    import torch

    te2 = any(name.startswith("text_encoder_2.") for name, _ in items)
    tensors: dict[str, Any] = {}
    for name, m in items:
        _check_dora(name, m, peft_style=False)
        key = canonical_to_kohya(name, family, te2=te2)
        tensors[f"{key}.lora_down.weight"] = m.down
        tensors[f"{key}.lora_up.weight"] = m.up
        tensors[f"{key}.alpha"] = torch.tensor(_alpha(m), dtype=m.down.dtype)
        if m.dora_scale is not None:
            tensors[f"{key}.dora_scale"] = m.dora_scale
    ranks = Counter(int(m.rank or 0) for _, m in items)
    alphas = Counter(_alpha(m) for _, m in items)
    meta.setdefault("ss_network_module", "networks.lora")
    meta.setdefault("ss_network_dim", str(ranks.most_common(1)[0][0]))
    meta.setdefault("ss_network_alpha", str(alphas.most_common(1)[0][0]))
    version = families.kohya_version(family)
    if version:
        meta.setdefault("ss_base_model_version", version)
    return _save(tensors, dest, meta)


def _write_peft(
    items: list[tuple[str, ModuleWeights]], dest: Path, meta: dict[str, str], family: str | None
) -> Path:
    groups = _by_component(items)
    if len(groups) != 1:
        raise UnsupportedError(
            f"a PEFT adapter wraps one model, but these modules span {', '.join(groups)}: write each component separately"
        )
    ((component, group),) = groups.items()
    tensors: dict[str, Any] = {}
    for path, m in group:
        _check_dora(f"{component}.{path}", m, peft_style=True)
        tensors[f"base_model.model.{path}.lora_A.weight"] = m.down
        tensors[f"base_model.model.{path}.lora_B.weight"] = m.up
        if m.dora_scale is not None:
            tensors[f"base_model.model.{path}.lora_magnitude_vector"] = m.dora_scale
    config = {
        **lora_config(group),
        "peft_type": "LORA",
        "task_type": None,
        "bias": "none",
        "lora_dropout": 0.0,
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "use_rslora": False,
        "base_model_name_or_path": f"{family or 'unknown'}/{component}",
    }
    config_bytes = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    meta = {"format": "pt", **meta}
    if dest.suffix == ".safetensors":
        atomic_write_bytes(dest.with_name(f"{dest.stem}.adapter_config.json"), config_bytes)
        return _save(tensors, dest, meta)
    with atomic_dir(dest) as tmp:
        _save(tensors, tmp / "adapter_model.safetensors", meta)
        (tmp / "adapter_config.json").write_bytes(config_bytes)
    return dest
