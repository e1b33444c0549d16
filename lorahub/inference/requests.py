"""Generation requests and results, and the A1111 `<lora:NAME:WEIGHT>` prompt-tag parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lorahub.errors import InvalidInputError
from lorahub.types import AdapterSpec, MixMember, check_name, check_weight

MAX_SIDE = 2048
MAX_STEPS = 500
MAX_IMAGES = 16
TAG_RE = re.compile(r"<lora:([^:>]+)((?::[^:>]*)*)>", re.IGNORECASE)


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: prompt, resolved adapters, sampling settings; `base` None = engine default."""

    prompt: str
    negative_prompt: str = ""
    adapters: tuple[AdapterSpec, ...] | list[AdapterSpec] = ()
    steps: int = 20
    guidance: float = 7.5
    seed: int = 0
    width: int | None = None
    height: int | None = None
    n: int = 1
    scheduler: str | None = None
    clip_skip: int | None = None
    base: str | None = None

    def validate(self) -> None:
        """Raise InvalidInputError for out-of-range settings."""
        if not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInputError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")
        if not 1 <= self.n <= MAX_IMAGES:
            raise InvalidInputError(f"n must be between 1 and {MAX_IMAGES}, got {self.n}")
        for side, value in (("width", self.width), ("height", self.height)):
            if value is not None and not (8 <= value <= MAX_SIDE and value % 8 == 0):
                raise InvalidInputError(
                    f"{side} must be a multiple of 8 between 8 and {MAX_SIDE}, got {value}"
                )
        if self.clip_skip is not None and self.clip_skip < 0:
            raise InvalidInputError(f"clip_skip must be >= 0, got {self.clip_skip}")
        if not 0 <= self.seed < 2**63:
            raise InvalidInputError(f"seed must be between 0 and 2**63-1, got {self.seed}")
        for a in self.adapters:
            for w in (a.weight, a.te_weight, *(a.block_weights or {}).values()):
                if w is not None:
                    check_weight(w, a.name)
        names = [a.name for a in self.adapters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidInputError(f"adapter listed twice: {', '.join(dupes)}")


@dataclass
class GenerationResult:
    """The images of one request and the record written into their PNGs."""

    images: list[Any]
    record: dict[str, Any] = field(default_factory=dict)


def parse_prompt_tags(prompt: str) -> tuple[str, list[MixMember]]:
    """Strip `<lora:NAME[:W[:UNET_W]]>` / `<lora:NAME:te=W:unet=W>` tags; return (prompt, members).

    A1111 order: with two numbers the first is the text-encoder weight, the second the UNet's.
    """
    members: list[MixMember] = []
    for match in TAG_RE.finditer(prompt):
        members.append(_tag_member(match.group(1).strip(), match.group(2), match.group(0)))
    cleaned = TAG_RE.sub(" ", prompt)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    cleaned = re.sub(r"\s+([,.;])", r"\1", cleaned)
    return cleaned, members


def _tag_member(name: str, rest: str, tag: str) -> MixMember:
    """One prompt tag as a MixMember."""
    check_name(name.partition("@")[0], "adapter name")
    weight, te_weight = tag_weights(rest, tag)
    return MixMember(ref=name, weight=weight, te_weight=te_weight)


def tag_weights(rest: str, tag: str) -> tuple[float, float | None]:
    """(UNet weight, text-encoder weight or None) of a tag's `:W[:UNET_W]` / `:te=W:unet=W` part."""
    parts = [p.strip() for p in rest.split(":")[1:] if p.strip()]
    named = {k.strip(): v for k, _, v in (p.partition("=") for p in parts if "=" in p)}
    plain = [p for p in parts if "=" not in p]
    try:
        if named:
            te = float(named["te"]) if "te" in named else None
            unet = float(named.get("unet", 1.0))
        elif len(plain) >= 2:
            unet, te = float(plain[1]), float(plain[0])
        else:
            unet, te = (float(plain[0]) if plain else 1.0), None
    except ValueError:
        raise InvalidInputError(f"invalid weight in prompt tag {tag!r}") from None
    check_weight(unet, tag)
    return unet, None if te is None else check_weight(te, tag)
