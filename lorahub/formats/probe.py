"""Base-model family from tensor shapes (cross-attention and text-encoder widths) and metadata."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lorahub import families
from lorahub.formats import untrusted
from lorahub.formats.layout import ModuleEntry

# The widths and names come from the family table (`lorahub.families`), read once here.
CROSS_WIDTHS = families.cross_widths()
TE1_WIDTHS = families.text_widths(0)
TE2_WIDTHS = families.text_widths(1)


@dataclass(frozen=True)
class Dims:
    """A module's ΔW dimensions as stored: out features, flattened in features, rank."""

    out: int
    inp: int
    rank: int | None
    conv: bool


def module_dims(entry: ModuleEntry, header: dict[str, Any]) -> Dims | None:
    """Dimensions of ΔW reconstructed from the factor shapes (LoKr: Kronecker product)."""
    shape = {role: list(header[key]["shape"]) for role, key in entry.keys.items()}
    kind = entry.kind
    try:
        if kind == "lora":
            down, up = shape["down"], shape["up"]
            return Dims(up[0], down[1], down[0], len(down) == 4 and down[2:] != [1, 1])
        if kind == "loha":
            a, b = shape["hada_w1_a"], shape["hada_w1_b"]
            return Dims(a[0], b[1], b[0], "hada_t1" in shape)
        if kind == "lokr":
            return _lokr_dims(shape)
    except (KeyError, IndexError):
        return None
    return None


def _lokr_dims(shape: dict[str, list[int]]) -> Dims:
    w1 = (
        shape["lokr_w1"][:2]
        if "lokr_w1" in shape
        else [shape["lokr_w1_a"][0], shape["lokr_w1_b"][1]]
    )
    if "lokr_w2" in shape:
        w2, conv = shape["lokr_w2"][:2], len(shape["lokr_w2"]) == 4
    elif "lokr_t2" in shape:
        w2, conv = [shape["lokr_w2_a"][1], shape["lokr_w2_b"][1]], True
    else:
        w2, conv = [shape["lokr_w2_a"][0], shape["lokr_w2_b"][1]], False
    rank = (
        shape["lokr_w2_b"][0]
        if "lokr_w2_b" in shape
        else shape["lokr_w1_b"][0]
        if "lokr_w1_b" in shape
        else None
    )
    return Dims(w1[0] * w2[0], w1[1] * w2[1], rank, conv)


@dataclass(frozen=True)
class ShapeVerdict:
    """What the shapes say: a family (None: nothing to go by), the evidence, and the families
    the shapes fit equally well when they cannot decide (the metadata then does)."""

    family: str | None
    evidence: list[str]
    fits: tuple[str, ...] = ()


def probe_shapes(modules: dict[str, ModuleEntry], dims: dict[str, Dims], fmt: str) -> ShapeVerdict:
    """Family decided by the shapes alone, and the evidence lines."""
    dit = families.by_block_names(modules) or _by_denoiser(modules)
    if dit:
        return ShapeVerdict(dit, [families.get(dit).block_note])
    if fmt == "cloneofsimo":
        return ShapeVerdict(*_probe_positional(modules, dims))
    evidence: list[str] = []
    cross = Counter(d.inp for n, d in dims.items() if re.search(r"\.attn2\.to_[kv]$", n))
    unet_family = None
    if cross:
        width = cross.most_common(1)[0][0]
        unet_family = CROSS_WIDTHS.get(width)
        evidence.append(
            f"cross-attention (attn2.to_k/to_v) input width {width} -> {unet_family or 'unknown'}"
        )
    te_family = _probe_text(modules, dims, evidence)
    fits: tuple[str, ...] = ()
    w1 = _te_width("text_encoder", modules, dims)
    if unet_family is None and _te_width("text_encoder_2", modules, dims) is None:
        fits = families.sharing_first_encoder(w1 or 0)
    if fits:
        evidence.append(
            f"a first text encoder of width {w1} alone fits {', '.join(fits)}: the shapes cannot tell which"
        )
    return ShapeVerdict(unet_family or te_family, evidence, fits)


def _by_denoiser(modules: dict[str, ModuleEntry]) -> str | None:
    """The family whose denoiser component only it has (a `transformer` module: a DiT)."""
    components = {m.component for m in modules.values()}  # ask per component, not per module
    found = {families.by_denoiser(c) for c in components} - {None}
    return found.pop() if len(found) == 1 else None


def _te_width(component: str, modules: dict[str, ModuleEntry], dims: dict[str, Dims]) -> int | None:
    widths = Counter(
        d.inp
        for n, d in dims.items()
        if modules[n].component == component and re.search(r"(self_attn\.\w+_proj|mlp\.fc1)$", n)
    )
    return widths.most_common(1)[0][0] if widths else None


def _probe_text(
    modules: dict[str, ModuleEntry], dims: dict[str, Dims], evidence: list[str]
) -> str | None:
    family = None
    w2 = _te_width("text_encoder_2", modules, dims)
    if w2 is not None:
        fam2, label = TE2_WIDTHS.get(w2, (None, "unknown encoder"))
        evidence.append(f"text_encoder_2 hidden width {w2} ({label}) -> {fam2 or 'unknown'}")
        family = fam2
    w1 = _te_width("text_encoder", modules, dims)
    if w1 is not None:
        fam1, label = TE1_WIDTHS.get(w1, (None, "unknown encoder"))
        if family and fam1 != family and families.get(family).text_encoders[0].width == w1:
            fam1 = family  # the second encoder's family has this first encoder too
        evidence.append(f"text_encoder hidden width {w1} ({label}) -> {fam1 or 'unknown'}")
        family = family or fam1
    return family


def _probe_positional(
    modules: dict[str, ModuleEntry], dims: dict[str, Dims]
) -> tuple[str | None, list[str]]:
    unet_in = {d.inp for n, d in dims.items() if modules[n].component == "unet"}
    evidence = [f"positional keys: UNet input widths {sorted(unet_in)}"]
    family = None
    for width in sorted(families.cross_widths(tiny=False), reverse=True):
        if width in unet_in and {320, 640, 1280} & unet_in:
            family = CROSS_WIDTHS[width]
            evidence.append(f"context width {width} among UNet inputs -> {family}")
            break
    te_family = _probe_text_positional(modules, dims, evidence)
    return family or te_family, evidence


def _probe_text_positional(
    modules: dict[str, ModuleEntry], dims: dict[str, Dims], evidence: list[str]
) -> str | None:
    widths = Counter(d.inp for n, d in dims.items() if modules[n].component == "text_encoder")
    if not widths:
        return None
    width = widths.most_common(1)[0][0]
    fam, label = TE1_WIDTHS.get(width, (None, "unknown encoder"))
    evidence.append(f"text_encoder hidden width {width} ({label}) -> {fam or 'unknown'}")
    return fam


def probe_metadata(
    metadata: dict[str, str], peft_config: dict[str, Any] | None
) -> tuple[str | None, str | None]:
    """(family, evidence line) claimed by the file's metadata or PEFT config, if any."""
    version = metadata.get("ss_base_model_version", "")
    if version:
        fam = families.from_text(version)
        if fam:
            return fam, f"metadata ss_base_model_version={version} -> {fam}"
    arch = metadata.get("modelspec.architecture", "")
    if arch:
        fam = families.from_text(arch)
        if fam:
            return fam, f"metadata modelspec.architecture={arch} -> {fam}"
    if peft_config and peft_config.get("base_model_name_or_path"):
        name = str(peft_config["base_model_name_or_path"])
        fam = families.from_text(name)
        if fam:
            return fam, f"PEFT base_model_name_or_path {name} -> {fam}"
    if metadata.get("ss_v2") in ("True", "true"):
        return "sd2", "metadata ss_v2=True -> sd2"
    return _diffusers_meta_family(metadata)


def _diffusers_meta_family(metadata: dict[str, str]) -> tuple[str | None, str | None]:
    raw = metadata.get("lorahub.base_family")
    if raw:
        return raw, f"metadata lorahub.base_family={raw}"
    meta = untrusted.loads(metadata.get("lora_adapter_metadata"))
    name = meta.get("unet.base_model_name_or_path") if isinstance(meta, dict) else None
    fam = families.from_text(str(name)) if name else None
    return (fam, f"lora_adapter_metadata base model {name} -> {fam}") if fam else (None, None)


def decide_family(
    shapes: ShapeVerdict,
    meta: tuple[str | None, str | None],
    metadata: dict[str, str],
) -> tuple[str, list[str], str | None]:
    """Shapes win; metadata confirms or conflicts (reported), and decides where shapes cannot."""
    shape_family = shapes.family
    meta_family, meta_line = meta
    evidence = list(shapes.evidence)
    if meta_line:
        evidence.append(meta_line)
    if meta_family in shapes.fits:
        return str(meta_family), evidence, None
    conflict = None
    if shape_family and meta_family and meta_family != shape_family:
        conflict = f"shapes say {shape_family} but {meta_line}"
    if shape_family == "sd2" and metadata.get("ss_v2") in ("False", "false"):
        conflict = conflict or "shapes say sd2 but metadata ss_v2=False"
    elif metadata.get("ss_v2") in ("False", "false") and shape_family == "sd1":
        evidence.append("metadata ss_v2=False (not SD2) agrees")
    return shape_family or meta_family or "unknown", evidence, conflict
