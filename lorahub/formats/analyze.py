"""`inspect_file`: read a header, detect the format, probe the base, summarise — no torch."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.errors import BadFileError
from lorahub.formats import untrusted
from lorahub.formats.header import (
    DTYPE_NAMES,
    hash_file,
    is_pickle,
    read_header,
    read_scalars,
    refuse_pickle,
)
from lorahub.formats.info import AdapterInfo
from lorahub.formats.layout import Layout, key_patterns, parse_layout
from lorahub.formats.metadata import summarize_metadata, trigger_words
from lorahub.formats.names import SGM_LAYOUTS
from lorahub.formats.probe import Dims, decide_family, module_dims, probe_metadata, probe_shapes
from lorahub.formats.source import Source, load_pickle, pseudo_header, resolve_source

COMPONENT_ORDER = ("unet", "transformer", "text_encoder", "text_encoder_2")


@dataclass
class Analysis:
    """The parsed adapter: source, header, layout, per-module dims and alphas, base family."""

    source: Source
    header: dict[str, Any]
    metadata: dict[str, str]
    header_bytes: int
    layout: Layout
    dims: dict[str, Dims]
    alphas: dict[str, float | None]
    family: tuple[str, list[str], str | None]
    tensors: dict[str, Any] | None = None  # set for trusted pickles (already in memory)


def analyze(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Analysis:
    """Parse `path` into an Analysis (header only for safetensors)."""
    source = resolve_source(path)
    tensors = None
    metadata: dict[str, str] = {}
    if is_pickle(source.file):
        if not trust_pickle:
            refuse_pickle(source.file)
        tensors = load_pickle(source.file)
        header, header_len = pseudo_header(tensors), 0
    else:
        header, metadata, header_len = read_header(source.file)
    te_component = _peft_te_component(source.peft_config)
    layout = _complete(parse_layout(list(header), 2, te_component))
    dims = _dims(layout, header)
    shapes = probe_shapes(layout.modules, dims, layout.format)
    if layout.sgm and shapes.family in SGM_LAYOUTS and SGM_LAYOUTS[shapes.family][0] != 2:
        layout = _complete(parse_layout(list(header), SGM_LAYOUTS[shapes.family][0], te_component))
        dims = _dims(layout, header)
    family = decide_family(shapes, probe_metadata(metadata, source.peft_config), metadata)
    scalars, read = _alpha_scalars(source.file, header, header_len, layout, tensors)
    alphas = module_alphas(layout, scalars, metadata, source.peft_config)
    return Analysis(
        source,
        header,
        metadata,
        8 + header_len + read if header_len else 0,
        layout,
        dims,
        alphas,
        family,
        tensors,
    )


def _complete(layout: Layout) -> Layout:
    """Drop modules without a full set of factors; nothing usable at all means `unknown`."""
    good = {n: e for n, e in layout.modules.items() if e.kind != "incomplete"}
    stray = [
        k for n, e in layout.modules.items() if e.kind == "incomplete" for k in e.keys.values()
    ]
    if not good:
        return Layout("unknown", {}, layout.unknown_keys + stray)
    return Layout(layout.format, good, layout.unknown_keys + stray, layout.sgm)


def _dims(layout: Layout, header: dict[str, Any]) -> dict[str, Dims]:
    out = {}
    for name, entry in layout.modules.items():
        d = module_dims(entry, header)
        if d is not None:
            out[name] = d
    return out


def _peft_te_component(config: dict[str, Any] | None) -> str | None:
    name = str((config or {}).get("base_model_name_or_path") or "").replace("\\", "/").rstrip("/")
    return "text_encoder_2" if name.endswith("text_encoder_2") else None


def _alpha_scalars(
    file: Path,
    header: dict[str, Any],
    header_len: int,
    layout: Layout,
    tensors: dict[str, Any] | None,
) -> tuple[dict[str, float], int]:
    keys = [e.keys["alpha"] for e in layout.modules.values() if "alpha" in e.keys]
    if tensors is not None:
        return {k: float(tensors[k].float().item()) for k in keys}, 0
    read = sum(header[k]["data_offsets"][1] - header[k]["data_offsets"][0] for k in keys)
    return (read_scalars(file, header, header_len, keys) if keys else {}), read


def module_alphas(
    layout: Layout,
    scalars: dict[str, float],
    metadata: dict[str, str],
    peft_config: dict[str, Any] | None,
) -> dict[str, float | None]:
    """Alpha per module: `.alpha` tensors, diffusers `lora_adapter_metadata`, or the PEFT config."""
    diffusers_meta = _json_dict(metadata.get("lora_adapter_metadata"))
    configs: dict[str, LoraConfigAlphas | None] = {}
    out: dict[str, float | None] = {}
    for name, entry in layout.modules.items():
        if "alpha" in entry.keys and entry.keys["alpha"] in scalars:
            out[name] = scalars[entry.keys["alpha"]]
            continue
        component, _, path = name.partition(".")
        if component not in configs:
            configs[component] = _component_config(component, diffusers_meta, peft_config, layout)
        cfg = configs[component]
        out[name] = cfg.alpha(path) if cfg else None
    return out


def _component_config(
    component: str,
    diffusers_meta: dict[str, Any] | None,
    peft_config: dict[str, Any] | None,
    layout: Layout,
) -> LoraConfigAlphas | None:
    if diffusers_meta and f"{component}.lora_alpha" in diffusers_meta:
        cfg = {
            k[len(component) + 1 :]: v
            for k, v in diffusers_meta.items()
            if k.startswith(component + ".")
        }
        return LoraConfigAlphas(cfg, "lora_adapter_metadata")
    if peft_config and layout.format == "peft" and "lora_alpha" in peft_config:
        return LoraConfigAlphas(peft_config, "adapter_config.json")
    return None


def _json_dict(raw: str | None) -> dict[str, Any] | None:
    data = untrusted.loads(raw)
    return data if isinstance(data, dict) else None


class LoraConfigAlphas:
    """A LoraConfig's alpha per module path, with alpha_pattern/rank_pattern and rsLoRA folded
    in; patterns (untrusted: they come from the file) are checked and compiled once."""

    def __init__(self, cfg: dict[str, Any], source: str):
        rank = untrusted.number(cfg.get("r", 8))
        alpha = untrusted.number(cfg.get("lora_alpha", rank))
        if rank is None or alpha is None or rank <= 0:
            raise BadFileError(f"{source}: lora_alpha and r must be finite numbers, r above 0")
        self.alpha0, self.rank0, self.rslora = (
            float(alpha),
            float(rank),
            bool(cfg.get("use_rslora")),
        )
        self.alpha_patterns = self._patterns(cfg.get("alpha_pattern"), f"{source} alpha_pattern")
        self.rank_patterns = self._patterns(cfg.get("rank_pattern"), f"{source} rank_pattern")

    @staticmethod
    def _patterns(raw: Any, source: str) -> list[tuple[re.Pattern[str] | str, float]]:
        if not raw:
            return []
        if not isinstance(raw, dict) or len(raw) > untrusted.MAX_PATTERNS:
            raise BadFileError(
                f"{source} must map at most {untrusted.MAX_PATTERNS} module patterns to numbers"
            )
        out = []
        for pattern, value in raw.items():
            number = untrusted.number(value)
            if number is None or number <= 0:
                raise BadFileError(
                    f"{source}: the value for {str(pattern)[:60]!r} is not a number above 0"
                )
            out.append((untrusted.module_pattern(pattern, source), float(number)))
        return out

    def alpha(self, path: str) -> float:
        alpha = next(
            (v for p, v in self.alpha_patterns if untrusted.pattern_matches(p, path)), None
        )
        rank = next((v for p, v in self.rank_patterns if untrusted.pattern_matches(p, path)), None)
        alpha = self.alpha0 if alpha is None else alpha
        rank = self.rank0 if rank is None else rank
        # rsLoRA scales by alpha/sqrt(r); store the alpha that gives that scale as alpha/r
        return alpha * rank**0.5 if self.rslora else alpha


def inspect_file(
    path: str | os.PathLike[str], *, trust_pickle: bool = False, hash: bool = False
) -> AdapterInfo:
    """Inspect an adapter from its header alone (plus alpha scalars); hash it when asked."""
    a = analyze(path, trust_pickle=trust_pickle)
    return build_info(a, hash_file(a.source.file) if hash else None)


def build_info(a: Analysis, hashes: Any = None) -> AdapterInfo:
    """Turn an Analysis into the AdapterInfo record."""
    ranks = [d.rank for d in a.dims.values() if d.rank is not None]
    rank_counts = Counter(ranks)
    alpha_counts = Counter(v for v in a.alphas.values() if v is not None)
    dtypes = Counter(e["dtype"] for k, e in a.header.items() if not k.endswith(".alpha"))
    stat = a.source.file.stat()
    family, evidence, conflict = a.family
    return AdapterInfo(
        path=str(a.source.path),
        size=stat.st_size,
        mtime=stat.st_mtime,
        format=a.layout.format,
        network_type=_network_type(a),
        base_family=family,
        base_evidence=evidence,
        base_conflict=conflict,
        components=_components(a),
        rank=rank_counts.most_common(1)[0][0] if ranks else None,
        rank_min=min(ranks) if ranks else None,
        rank_max=max(ranks) if ranks else None,
        rank_summary={str(r): n for r, n in sorted(rank_counts.items())},
        alpha=alpha_counts.most_common(1)[0][0] if alpha_counts else None,
        dtype=_dtype_name(dtypes.most_common(1)[0][0]) if dtypes else None,
        param_count=sum(_numel(e["shape"]) for e in a.header.values()),
        module_count=len(a.layout.modules),
        targets=_targets(a),
        metadata=dict(a.metadata),
        summary=summarize_metadata(a.metadata),
        trigger_words=trigger_words(a.metadata),
        key_patterns=key_patterns(a.layout.unknown_keys),
        header_bytes=a.header_bytes,
        tensor_file=str(a.source.file) if a.source.file != a.source.path else None,
        component_summary=_component_summary(a),
        hashes=hashes,
    )


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _dtype_name(code: str) -> str:
    return DTYPE_NAMES.get(code, code.lower())


def _network_type(a: Analysis) -> str:
    kinds = {e.kind for e in a.layout.modules.values()}
    if not kinds:
        return "unknown"
    for kind in ("lokr", "loha"):
        if kind in kinds:
            return kind
    if any("dora_scale" in e.keys for e in a.layout.modules.values()):
        return "dora"
    return "locon" if any(d.conv for d in a.dims.values()) else "lora"


def _components(a: Analysis) -> list[str]:
    found = {e.component for e in a.layout.modules.values()}
    return [c for c in COMPONENT_ORDER if c in found] + sorted(found - set(COMPONENT_ORDER))


def _component_summary(a: Analysis) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for comp in _components(a):
        ranks = [
            d.rank
            for n, d in a.dims.items()
            if a.layout.modules[n].component == comp and d.rank is not None
        ]
        count = sum(1 for e in a.layout.modules.values() if e.component == comp)
        common = Counter(ranks).most_common(1)
        out[comp] = {
            "modules": count,
            "rank": common[0][0] if common else None,
            "rank_min": min(ranks, default=None),
            "rank_max": max(ranks, default=None),
        }
    return out


def _targets(a: Analysis) -> list[str]:
    if a.layout.format == "cloneofsimo":
        classes: set[str] = set()
        for comp in ("unet", "text_encoder"):
            value = _json_list(a.metadata.get(comp))
            classes.update(value)
        return sorted(classes)
    leaves = set()
    for name in a.layout.modules:
        parts = name.split(".")
        leaves.add(".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1])
    return sorted(leaves)


def _json_list(raw: str | None) -> list[str]:
    data = untrusted.loads(raw)
    return [str(x) for x in data] if isinstance(data, list) else []
