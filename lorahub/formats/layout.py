"""Format detection and key normalisation: tensor keys -> canonical modules with tensor roles."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from lorahub.formats.names import KOHYA_PREFIXES, kohya_to_canonical

# (suffix regex, role); the module path is what precedes the suffix.
ROLE_SUFFIXES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), role)
    for p, role in (
        (r"\.lora_A(?:\.default)?\.weight$", "down"),
        (r"\.lora_B(?:\.default)?\.weight$", "up"),
        (r"\.lora(?:_linear_layer)?\.down\.weight$", "down"),
        (r"\.lora(?:_linear_layer)?\.up\.weight$", "up"),
        (r"\.lora_down\.weight$", "down"),
        (r"\.lora_up\.weight$", "up"),
        (r"\.lora_mid\.weight$", "mid"),
        (r"\.(?:lora_magnitude_vector|dora_scale)(?:\.default)?(?:\.weight)?$", "dora_scale"),
        (r"\.alpha$", "alpha"),
        (r"\.(hada_w[12]_[ab]|hada_t[12]|lokr_w[12](?:_[ab])?|lokr_t2)$", ""),
    )
)
ATTNPROC = re.compile(r"^(.*?)(\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
POSITIONAL = re.compile(r"^(unet|text_encoder|text_encoder_2):(\d+):(up|down)$")
TE_ATTN = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
LORA_ROLES = frozenset({"down", "up", "mid", "alpha", "dora_scale"})
SGM_BLOCKS = ("input_blocks", "middle_block", "output_blocks")
COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")


@dataclass
class ModuleEntry:
    """One adapted module: its canonical name and the tensor key of each role."""

    name: str
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.keys.keys() <= LORA_ROLES:  # the common case, without looking at each role
            return "lora" if "down" in self.keys and "up" in self.keys else "incomplete"
        heads = {r[:5] for r in self.keys}
        if "hada_" in heads:
            return "loha"
        if "lokr_" in heads:
            return "lokr"
        return "lora" if "down" in self.keys and "up" in self.keys else "incomplete"

    @functools.cached_property
    def component(self) -> str:
        return self.name.partition(".")[0].partition(":")[0]


@dataclass
class Layout:
    """The parsed structure of an adapter's keys."""

    format: str
    modules: dict[str, ModuleEntry]
    unknown_keys: list[str]
    sgm: bool = False


def split_role(key: str) -> tuple[str, str] | None:
    """`a.b.lora_down.weight` -> (`a.b`, `down`); None when no LoRA role suffix matches."""
    for pattern, role in ROLE_SUFFIXES:
        m = pattern.search(key)
        if m:
            return key[: m.start()], role or m.group(1)
    return None


def parse_layout(
    keys: list[str], layers_per_block: int = 2, te_component: str | None = None
) -> Layout:
    """Detect the format of `keys` and group them into canonical modules."""
    if any(POSITIONAL.match(k) for k in keys):
        return _positional(keys)
    if any(k.startswith(tuple(KOHYA_PREFIXES)) for k in keys):
        return _kohya(keys, layers_per_block)
    if any(k.startswith("base_model.model.") for k in keys):
        return _generic(keys, "peft", strip="base_model.model.", te_component=te_component)
    return _generic(keys, "diffusers", te_component=te_component)


CLIP_ROOTS = ("encoder.", "embeddings.", "final_layer_norm")


def canonical_te_path(name: str) -> str:
    """One name per CLIP layer: transformers 5 dropped the `text_model.` level, files have both."""
    component, _, rest = name.partition(".")
    if component.startswith("text_encoder") and rest.startswith(CLIP_ROOTS):
        return f"{component}.text_model.{rest}"
    return name


def _add(modules: dict[str, ModuleEntry], name: str, role: str, key: str) -> None:
    name = canonical_te_path(name)
    modules.setdefault(name, ModuleEntry(name)).keys[role] = key


def _positional(keys: list[str]) -> Layout:
    modules: dict[str, ModuleEntry] = {}
    unknown = []
    for k in keys:
        m = POSITIONAL.match(k)
        if m:
            _add(modules, f"{m.group(1)}:{m.group(2)}", m.group(3), k)
        else:
            unknown.append(k)
    return Layout("cloneofsimo", modules, unknown)


def _kohya(keys: list[str], lpb: int) -> Layout:
    modules: dict[str, ModuleEntry] = {}
    unknown = []
    sgm = False
    # A module's keys share its name and files share their suffixes: each is worked out once.
    names: dict[str, str | None] = {}
    roles: dict[str, tuple[str, str] | None] = {}
    for k in keys:
        lora_name, _, rest = k.partition(".")
        if rest not in roles:
            roles[rest] = split_role("." + rest) if rest else None
        split = roles[rest]
        if lora_name not in names:
            canonical = kohya_to_canonical(lora_name, lpb)
            names[lora_name] = canonical and canonical_te_path(canonical)
            sgm = sgm or (names[lora_name] is not None and any(s in lora_name for s in SGM_BLOCKS))
        name = names[lora_name]
        if split is None or split[0] or name is None:
            unknown.append(k)
            continue
        entry = modules.get(name)
        if entry is None:
            entry = modules[name] = ModuleEntry(name)
        entry.keys[split[1]] = k
    lycoris = any(e.kind in ("loha", "lokr") for e in modules.values())
    return Layout("lycoris" if lycoris else "kohya", modules, unknown, sgm)


def _generic(keys: list[str], fmt: str, strip: str = "", te_component: str | None = None) -> Layout:
    modules: dict[str, ModuleEntry] = {}
    unknown = []
    attnproc = False
    for k in keys:
        body = k[len(strip) :] if strip and k.startswith(strip) else k
        m = ATTNPROC.match(body)
        if m:
            attnproc = attnproc or bool(m.group(2))
            path, role = _attnproc_path(m), m.group(4)
        else:
            split = split_role(body)
            if split is None:
                unknown.append(k)
                continue
            path, role = split
        _add(modules, _with_component(path, te_component), role, k)
    return Layout("diffusers-attnproc" if attnproc else fmt, modules, unknown)


def _attnproc_path(m: re.Match[str]) -> str:
    base, proj = m.group(1), m.group(3)
    if ".self_attn" in base or base.endswith("self_attn"):
        return f"{base}.{TE_ATTN[proj]}"
    return f"{base}.{'to_out.0' if proj == 'to_out' else proj}"


def _with_component(path: str, te_component: str | None) -> str:
    first = path.split(".", 1)[0]
    if first in COMPONENTS:
        return path
    if first == "text_model" or (te_component and path.startswith(CLIP_ROOTS)):
        return f"{te_component or 'text_encoder'}.{path}"
    if first in (
        "transformer_blocks",
        "single_transformer_blocks",
        "x_embedder",
        "context_embedder",
    ):
        return f"transformer.{path}"
    return f"unet.{path}"


def key_patterns(keys: list[str], limit: int = 20) -> list[str]:
    """Distinct key shapes with digits replaced by `*` (for reporting unknown files)."""
    seen: dict[str, None] = {}
    for k in keys:
        seen.setdefault(re.sub(r"\d+", "*", k), None)
    return sorted(seen)[:limit]
