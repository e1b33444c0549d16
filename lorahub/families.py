"""The one table of base-model families: what each is, how to recognise it, how to name it.

Pure data and small lookups (no torch, no diffusers), so `formats` can probe files with it and the
engine, the trainer, the server and the hub cards all decide a family the same way. A family is
one `Family` entry: a new architecture (a DiT such as Flux: a transformer instead of a UNet, T5
beside CLIP, flow matching) is one more entry here plus its key maps in `formats/names.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lorahub.errors import InvalidInputError

EPSILON = "epsilon"
V_PREDICTION = "v_prediction"
FLOW_MATCHING = "flow_matching"
OBJECTIVES = (EPSILON, V_PREDICTION, FLOW_MATCHING)
UNKNOWN = "unknown"
UNKNOWN_FAMILIES = (None, "", UNKNOWN)
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family: its pipeline component, hidden width and what it is."""

    component: str
    width: int
    label: str


@dataclass(frozen=True)
class KohyaNames:
    """The names community tools read: `ss_base_model_version` and `modelspec.architecture`
    (the base's; a LoRA's architecture is this plus `/lora`)."""

    ss_base_model_version: str
    architecture: str


@dataclass(frozen=True)
class Family:
    """Everything lorahub knows about one base-model family."""

    id: str
    pipeline_class: str
    denoiser: str  # the pipeline component LoRAs mostly target: "unet" or "transformer"
    text_encoders: tuple[TextEncoder, ...]
    cross_width: int | None  # UNet cross-attention (attn2.to_k) input width; None for a DiT
    objective: str  # what the denoiser predicts: epsilon, v_prediction or flow_matching
    native_size: int  # pixels per side the base was trained at
    kohya: KohyaNames | None
    reference_base: str  # the Hub id a model card names as the base
    aliases: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()  # lower-case substrings of a model name or metadata claiming it
    block_names: tuple[str, ...] = ()  # module-name tokens only this family's files hold
    block_note: str = ""  # the probe's evidence line when those names (or its denoiser) decide
    lora_targets: tuple[str, ...] = UNET_TARGETS
    text_lora_targets: tuple[str, ...] = TEXT_TARGETS
    tiny: str | None = None  # the id of its embedded tiny variant
    tiny_of: str | None = None  # for a tiny variant: the family whose architecture it copies
    base_ids: tuple[str, ...] = ()  # base names lorahub builds itself (the tiny models)
    kohya_by_objective: dict[str, KohyaNames] = field(default_factory=dict)
    a1111_version: str | None = None  # A1111's `sd version` choice

    @property
    def components(self) -> tuple[str, ...]:
        """The model components of its pipeline (tokenizers and scheduler aside)."""
        return (self.denoiser, *(te.component for te in self.text_encoders), "vae")

    @property
    def is_tiny(self) -> bool:
        """Whether this is an embedded tiny variant."""
        return self.tiny_of is not None

    def names_for(self, objective: str | None) -> KohyaNames | None:
        """The kohya/modelspec names of a base of this family trained for `objective`."""
        return self.kohya_by_objective.get(objective or "", self.kohya)


_CLIP_L = TextEncoder("text_encoder", 768, "CLIP ViT-L")
_SD2 = KohyaNames("sd_v2", "stable-diffusion-v2")


def _tiny(
    of: str, text: tuple[TextEncoder, ...], cross: int | None, ids: tuple[str, ...]
) -> Family:
    """A tiny variant: `of`'s architecture at toy widths, named by its own id everywhere."""
    real = FAMILIES[of]
    name = f"tiny-{of}"
    return Family(
        id=name,
        pipeline_class=real.pipeline_class,
        denoiser=real.denoiser,
        text_encoders=text,
        cross_width=cross,
        objective=EPSILON,
        native_size=64,
        kohya=KohyaNames(name, name),
        reference_base=f"lorahub/{name}",
        hints=(name,),
        tiny_of=of,
        base_ids=ids,
    )


FAMILIES: dict[str, Family] = {
    "sd1": Family(
        id="sd1",
        pipeline_class="StableDiffusionPipeline",
        denoiser="unet",
        text_encoders=(_CLIP_L,),
        cross_width=768,
        objective=EPSILON,
        native_size=512,
        kohya=KohyaNames("sd_v1", "stable-diffusion-v1"),
        reference_base="stable-diffusion-v1-5/stable-diffusion-v1-5",
        aliases=("sd15", "sd1.5"),
        hints=("sd_v1", "stable-diffusion-v1", "v1-5", "v1-4", "sd15", "sd-1", "sd1"),
        tiny="tiny-sd1",
        a1111_version="SD1",
    ),
    "sd2": Family(
        id="sd2",
        pipeline_class="StableDiffusionPipeline",
        denoiser="unet",
        text_encoders=(TextEncoder("text_encoder", 1024, "OpenCLIP ViT-H"),),
        cross_width=1024,
        objective=V_PREDICTION,
        native_size=768,
        kohya=_SD2,
        reference_base="stabilityai/stable-diffusion-2-1",
        aliases=("sd21",),
        hints=("sd_v2", "stable-diffusion-v2", "stable-diffusion-2", "v2-"),
        kohya_by_objective={
            V_PREDICTION: KohyaNames("sd_v2_768_v", "stable-diffusion-v2-768-v"),
            EPSILON: KohyaNames("sd_v2_512", "stable-diffusion-v2-512"),
        },
        a1111_version="SD2",
    ),
    "sdxl": Family(
        id="sdxl",
        pipeline_class="StableDiffusionXLPipeline",
        denoiser="unet",
        text_encoders=(_CLIP_L, TextEncoder("text_encoder_2", 1280, "OpenCLIP ViT-bigG")),
        cross_width=2048,
        objective=EPSILON,
        native_size=1024,
        kohya=KohyaNames("sdxl_base_v1-0", "stable-diffusion-xl-v1-base"),
        reference_base="stabilityai/stable-diffusion-xl-base-1.0",
        hints=("xl",),
        tiny="tiny-sdxl",
        a1111_version="SDXL",
    ),
    "flux": Family(
        id="flux",
        pipeline_class="FluxPipeline",
        denoiser="transformer",
        text_encoders=(_CLIP_L, TextEncoder("text_encoder_2", 4096, "T5-XXL")),
        cross_width=None,
        objective=FLOW_MATCHING,
        native_size=1024,
        kohya=None,  # lorahub does not name Flux files for kohya yet
        reference_base="black-forest-labs/FLUX.1-dev",
        hints=("flux",),
        block_names=("double_blocks", "single_blocks", "single_transformer_blocks"),
        block_note="Flux transformer block names (double/single blocks)",
    ),
}
FAMILIES["tiny-sd1"] = _tiny(
    "sd1", (TextEncoder("text_encoder", 32, "tiny-sd1 CLIP"),), 32, ("tiny", "tiny-sd1")
)
FAMILIES["tiny-sdxl"] = _tiny(
    "sdxl",
    (
        TextEncoder("text_encoder", 40, "tiny-sdxl CLIP 1"),
        TextEncoder("text_encoder_2", 56, "tiny-sdxl CLIP 2"),
    ),
    96,
    ("tiny-sdxl",),
)
# The order names and metadata are matched in, most specific first: a tiny id holds a real
# family's name, and an SDXL model's name may hold `v2-` or `sd1`.
HINT_ORDER = ("tiny-sdxl", "tiny-sd1", "flux", "sdxl", "sd2", "sd1")


def ids() -> tuple[str, ...]:
    """Every family id, in table order."""
    return tuple(FAMILIES)


def get(name: str) -> Family:
    """The family called `name` (an id or an alias); InvalidInputError naming the known ones."""
    family = find(name)
    if family is None:
        raise InvalidInputError(f"unknown base family {name!r}: use one of {', '.join(FAMILIES)}")
    return family


def find(name: str | None) -> Family | None:
    """The family called `name` (an id or an alias), else None."""
    if not name:
        return None
    return FAMILIES.get(canonical(name))


def canonical(name: str) -> str:
    """The id behind an alias (`sd15` -> `sd1`); any other name is returned as is."""
    for family in FAMILIES.values():
        if name in family.aliases:
            return family.id
    return name


def tiny_ids() -> dict[str, str]:
    """The base names of the embedded tiny models and the family each builds."""
    return {base: f.id for f in FAMILIES.values() for base in f.base_ids}


def of_base_id(base: str) -> str | None:
    """The family of a base lorahub builds itself (`tiny`, `tiny-sdxl`), else None."""
    return tiny_ids().get(base)


def by_cross_width(width: int | None) -> str | None:
    """The family whose UNet cross-attention takes `width` features, else None."""
    for family in FAMILIES.values():
        if width is not None and family.cross_width == width:
            return family.id
    return None


def cross_widths(*, tiny: bool = True) -> dict[int, str]:
    """Cross-attention width -> family (tiny variants left out when `tiny` is False)."""
    return {
        f.cross_width: f.id
        for f in FAMILIES.values()
        if f.cross_width is not None and (tiny or not f.is_tiny)
    }


def text_widths(position: int) -> dict[int, tuple[str, str]]:
    """Hidden width of the text encoder at `position` (0: first) -> (family, encoder label);
    where families share an encoder the first in table order names it."""
    out: dict[int, tuple[str, str]] = {}
    for family in FAMILIES.values():
        if len(family.text_encoders) > position:
            te = family.text_encoders[position]
            out.setdefault(te.width, (family.id, te.label))
    return out


def sharing_first_encoder(width: int) -> tuple[str, ...]:
    """The real families whose first text encoder has `width` when several do (a file holding
    only that encoder's modules fits each of them), else ()."""
    fits = tuple(
        f.id
        for f in FAMILIES.values()
        if not f.is_tiny and f.text_encoders and f.text_encoders[0].width == width
    )
    return fits if len(fits) > 1 else ()


def by_block_names(names: Iterable[str]) -> str | None:
    """The family whose own block names occur in any of the module `names`, else None."""
    names = list(names)
    for family in FAMILIES.values():
        if any(tok in name for name in names for tok in family.block_names):
            return family.id
    return None


def by_denoiser(component: str) -> str | None:
    """The only family whose denoiser is `component` (`transformer` -> flux), else None."""
    found = [f.id for f in FAMILIES.values() if f.denoiser == component and not f.is_tiny]
    return found[0] if len(found) == 1 else None


def from_text(text: str) -> str | None:
    """The family a model name or metadata text claims (`sdxl_base_v1-0`, `...v1-5...`)."""
    t = text.lower().replace("\\", "/")
    for family_id in HINT_ORDER:
        if any(hint in t for hint in FAMILIES[family_id].hints):
            return family_id
    return None


def native_size(family: str | None, default: int) -> int:
    """Pixels per side a base of `family` was trained at, else `default`."""
    found = find(family)
    return found.native_size if found else default


def kohya_version(family: str | None) -> str | None:
    """`ss_base_model_version` of a family's base, for the real families kohya names."""
    found = find(family)
    return (
        found.kohya.ss_base_model_version if found and found.kohya and not found.is_tiny else None
    )


def unet_family(cross_width: int | None, text_encoders: int) -> str:
    """The family of a UNet with this cross-attention width; when the width is in no entry, the
    first real UNet family with as many text encoders (the architecture it most resembles)."""
    exact = by_cross_width(cross_width)
    if exact:
        return exact
    for family in FAMILIES.values():
        if family.denoiser == "unet" and not family.is_tiny:
            if len(family.text_encoders) == text_encoders:
                return family.id
    return "sd1"
