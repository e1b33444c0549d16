"""Module names: kohya `lora_unet_…` underscore names <-> canonical dotted diffusers paths.

Kohya builds a name by replacing every '.' of the diffusers module path with '_'; we undo it
with the list of diffusers/transformers module names that themselves contain '_'. SDXL kohya
files use the SGM (original Stability) UNet names, mapped here to diffusers blocks.
"""

from __future__ import annotations

import functools
import re

# Module names containing '_' in diffusers UNets and transformers CLIP text models.
NAME_TOKENS = (
    "down_blocks",
    "up_blocks",
    "mid_block",
    "transformer_blocks",
    "single_transformer_blocks",
    "to_q",
    "to_k",
    "to_v",
    "to_out",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "proj_in",
    "proj_out",
    "proj_mlp",
    "conv_in",
    "conv_out",
    "conv_shortcut",
    "conv_norm_out",
    "time_emb_proj",
    "time_embedding",
    "time_proj",
    "linear_1",
    "linear_2",
    "add_embedding",
    "text_model",
    "self_attn",
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "text_projection",
    "final_layer_norm",
    "layer_norm1",
    "layer_norm2",
    "token_embedding",
    "position_embedding",
    "norm_out",
    "ff_context",
    "norm1_context",
    "context_embedder",
    "x_embedder",
    "time_text_embed",
    "encoder_hid_proj",
    "class_embedding",
    # SGM (original SDXL UNet) names, mapped to diffusers by `sgm_to_diffusers`
    "input_blocks",
    "middle_block",
    "output_blocks",
    "in_layers",
    "out_layers",
    "emb_layers",
    "skip_connection",
    "time_embed",
    "label_emb",
)
_TOKENS = sorted((tuple(t.split("_")) for t in NAME_TOKENS), key=len, reverse=True)
# The tokens that start with each word, longest first: a name is split in one pass.
_BY_FIRST: dict[str, list[tuple[str, ...]]] = {}
for _tok in _TOKENS:
    _BY_FIRST.setdefault(_tok[0], []).append(_tok)
SGM_PREFIXES = (
    "input_blocks.",
    "middle_block.",
    "output_blocks.",
    "time_embed.",
    "label_emb.",
    "out.",
)
RESNET_SGM = {
    "in_layers.2": "conv1",
    "out_layers.3": "conv2",
    "emb_layers.1": "time_emb_proj",
    "skip_connection": "conv_shortcut",
}
RESNET_DIFFUSERS = {v: k for k, v in RESNET_SGM.items()}
KOHYA_PREFIXES = {
    "lora_unet_": "unet",
    "lora_te_": "text_encoder",
    "lora_te1_": "text_encoder",
    "lora_te2_": "text_encoder_2",
}
# Families with two CLIP text encoders: kohya names them `lora_te1_`/`lora_te2_` whatever subset
# a file covers (A1111 matches nothing else on such a model); one-encoder families use `lora_te_`.
TWO_TE_FAMILIES = frozenset({"sdxl", "tiny-sdxl"})
# SGM layout per family: (layers per block, up blocks that have attention)
SGM_LAYOUTS: dict[str, tuple[int, frozenset[int]]] = {
    "sdxl": (2, frozenset({0, 1})),
    "tiny-sdxl": (1, frozenset({0})),
}


@functools.lru_cache(maxsize=16_384)
def underscore_to_dotted(name: str) -> str:
    """`down_blocks_0_attentions_0_proj_in` -> `down_blocks.0.attentions.0.proj_in`.

    Cached: a library's files share their module names, so a scan splits each name once."""
    parts = name.split("_")
    out: list[str] = []
    i = 0
    while i < len(parts):
        for tok in _BY_FIRST.get(parts[i], ()):
            if tuple(parts[i : i + len(tok)]) == tok:
                out.append("_".join(tok))
                i += len(tok)
                break
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


_PREFIXES_LONGEST_FIRST = sorted(KOHYA_PREFIXES.items(), key=lambda kv: -len(kv[0]))


@functools.lru_cache(maxsize=16_384)
def kohya_to_canonical(lora_name: str, layers_per_block: int = 2) -> str | None:
    """`lora_unet_…`/`lora_te1_…` -> `unet.…`/`text_encoder.…` (None if not a kohya name)."""
    for prefix, component in _PREFIXES_LONGEST_FIRST:
        if lora_name.startswith(prefix):
            path = underscore_to_dotted(lora_name[len(prefix) :])
            if component == "unet" and path.startswith(SGM_PREFIXES):
                path = sgm_to_diffusers(path, layers_per_block)
            elif component == "unet" and path.startswith(("double.", "single.")):
                return "transformer." + path  # kohya Flux (BFL names): kept as they are
            return f"{component}.{path}"
    return None


def canonical_to_kohya(name: str, family: str | None = None, te2: bool = False) -> str:
    """`unet.down_blocks.0…to_q` -> `lora_unet_down_blocks_0_…_to_q` (SGM names for SDXL families).

    The base family decides the text-encoder prefix; `te2` (a second encoder is present) decides
    it only when the family is not known.
    """
    component, _, path = name.partition(".")
    if component == "unet":
        if family in SGM_LAYOUTS:
            path = diffusers_to_sgm(path, family)
        prefix = "lora_unet_"
    elif component == "text_encoder":
        two = family in TWO_TE_FAMILIES or (te2 and family in (None, "unknown"))
        prefix = "lora_te1_" if two else "lora_te_"
    elif component == "text_encoder_2":
        prefix = "lora_te2_"
    else:
        raise ValueError(f"no kohya name for component {component!r}")
    return prefix + path.replace(".", "_")


def sgm_to_diffusers(path: str, lpb: int) -> str:
    """Map an SGM UNet path (`input_blocks.4.1.…`) to the diffusers one (`down_blocks.1.attentions.0.…`)."""
    simple = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "label_emb.0.0": "add_embedding.linear_1",
        "label_emb.0.2": "add_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "out.2": "conv_out",
    }
    for old, new in simple.items():
        if path == old or path.startswith(old + "."):
            return new + path[len(old) :]
    mid = re.match(r"middle_block\.([012])(?:\.(.*))?$", path)
    if mid:
        head = ["mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"][
            int(mid.group(1))
        ]
        rest = mid.group(2) or ""
        rest = _replace_prefix(rest, RESNET_SGM) if ".resnets." in head else rest
        return f"{head}.{rest}" if rest else head
    m = re.match(r"(input_blocks|output_blocks)\.(\d+)\.(\d+)(?:\.(.*))?$", path)
    if not m:
        return path
    kind, index, inner, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4) or ""
    if kind == "input_blocks":
        block, layer = divmod(index - 1, lpb + 1)
        head = (
            f"down_blocks.{block}.downsamplers.0"
            if layer == lpb
            else _inner(f"down_blocks.{block}", inner, layer)
        )
        if layer == lpb:
            rest = "conv" if rest == "op" else rest
    else:
        block, layer = divmod(index, lpb + 1)
        upsampler = inner == 2 or (inner == 1 and rest == "conv")
        head = (
            f"up_blocks.{block}.upsamplers.0"
            if upsampler
            else _inner(f"up_blocks.{block}", inner, layer)
        )
    if ".resnets." in head:
        rest = _replace_prefix(rest, RESNET_SGM)
    return f"{head}.{rest}" if rest else head


def _inner(block: str, inner: int, layer: int) -> str:
    return f"{block}.{'resnets' if inner == 0 else 'attentions'}.{layer}"


def _replace_prefix(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def diffusers_to_sgm(path: str, family: str) -> str:
    """Inverse of `sgm_to_diffusers` for the modules a LoRA targets."""
    lpb, up_attention = SGM_LAYOUTS[family]
    simple = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_out": "out.2",
    }
    for old, new in simple.items():
        if path == old or path.startswith(old + "."):
            return new + path[len(old) :]
    m = re.match(
        r"(down_blocks|mid_block|up_blocks)\.(?:(\d+)\.)?(resnets|attentions|downsamplers|upsamplers)\.(\d+)(?:\.(.*))?$",
        path,
    )
    if not m:
        return path
    kind, block, sub, layer, rest = (
        m.group(1),
        int(m.group(2) or 0),
        m.group(3),
        int(m.group(4)),
        m.group(5) or "",
    )
    if sub == "resnets":
        rest = _replace_prefix(rest, RESNET_DIFFUSERS)
    if kind == "mid_block":
        head = "middle_block.1" if sub == "attentions" else f"middle_block.{0 if layer == 0 else 2}"
        inner = None
    elif kind == "down_blocks":
        if sub == "downsamplers":
            return f"input_blocks.{block * (lpb + 1) + lpb + 1}.0.op" + (
                rest[len("conv") :] if rest.startswith("conv") else ""
            )
        head, inner = f"input_blocks.{block * (lpb + 1) + layer + 1}", 0 if sub == "resnets" else 1
    else:
        if sub == "upsamplers":
            inner_up = 2 if block in up_attention else 1
            return f"output_blocks.{block * (lpb + 1) + lpb}.{inner_up}.{rest}"
        head, inner = f"output_blocks.{block * (lpb + 1) + layer}", 0 if sub == "resnets" else 1
    head = head if inner is None else f"{head}.{inner}"
    return f"{head}.{rest}" if rest else head
