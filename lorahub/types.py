"""Small frozen dataclasses passed between layers, and the parsers of references.

Pinned grammar (shared by the CLI, the library and the HTTP API):
- a name is `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 characters;
- a reference is `NAME[@VERSION]`, or an AutoV2 (10 hex) / AutoV3 (12 hex) hash prefix;
- a weighted reference is `REF[:WEIGHT]` or the per-component form `REF:unet=W,te=W`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lorahub.errors import InvalidInputError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: `$` would allow a final newline
MAX_NAME_LENGTH = 128  # names become file and folder names (store, sidecars): well under 255 bytes
WEIGHT_WARN_LIMIT = 5.0
MAX_WEIGHT = 100.0  # the one bound of every adapter weight: CLI, prompt tags, HTTP API, engine
BLOCKS = ("down", "mid", "up")


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it is a valid adapter/mix name, else raise InvalidInputError."""
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"invalid {what} {name[:20]!r}...: {len(name)} characters, at most {MAX_NAME_LENGTH}"
        )
    if not NAME_RE.fullmatch(name or ""):
        raise InvalidInputError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Ref:
    """A parsed reference: NAME[@VERSION] (a hash prefix parses as a bare name)."""

    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


def parse_ref(text: str) -> Ref:
    """Parse `NAME[@VERSION]`."""
    name, _, version = text.strip().partition("@")
    check_name(name)
    if _ and not version:
        raise InvalidInputError(f"invalid reference {text!r}: empty version after '@'")
    if version:
        check_name(version, "version")
    return Ref(name, version or None)


@dataclass(frozen=True)
class MixMember:
    """One member of a mix or a weighted adapter set.

    `weight` scales the UNet part; `te_weight` the text encoders (None: same as `weight`);
    `block_weights` optionally multiplies UNet down/mid/up blocks (keys from BLOCKS).
    """

    ref: str
    weight: float = 1.0
    te_weight: float | None = None
    block_weights: dict[str, float] | None = field(default=None, hash=False, compare=True)

    @property
    def text_weight(self) -> float:
        return self.weight if self.te_weight is None else self.te_weight

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "weight": self.weight,
            "te_weight": self.te_weight,
            "block_weights": self.block_weights,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MixMember:
        return cls(
            ref=str(data["ref"]),
            weight=float(data.get("weight", 1.0)),
            te_weight=None if data.get("te_weight") is None else float(data["te_weight"]),
            block_weights=data.get("block_weights") or None,
        )


def check_weight(value: float, context: str) -> float:
    """`value` when finite and within ±MAX_WEIGHT, else InvalidInputError naming `context`."""
    if not -MAX_WEIGHT <= value <= MAX_WEIGHT:  # NaN fails both comparisons
        raise InvalidInputError(
            f"invalid weight {value!r} in {context!r}: weights must be finite, within ±{MAX_WEIGHT:g}"
        )
    return value


def _parse_float(text: str, context: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"invalid weight {text!r} in {context!r}") from None
    return check_weight(value, context)


def parse_block_weights(text: str) -> dict[str, float]:
    """Parse `down:W,mid:W,up:W` (any subset)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        block, sep, value = part.partition(":")
        if not sep or block not in BLOCKS:
            raise InvalidInputError(f"invalid block weight {part!r}: use down:W, mid:W, up:W")
        out[block] = _parse_float(value, text)
    return out


def parse_weighted_ref(text: str) -> MixMember:
    """Parse `REF[:WEIGHT]` or `REF:unet=W,te=W` into a MixMember."""
    ref, sep, spec = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    if not sep:
        parse_ref(ref)
        return MixMember(ref=ref)
    parse_ref(ref)
    if "=" not in spec:
        return MixMember(ref=ref, weight=_parse_float(spec, text))
    parts: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key not in ("unet", "te"):
            raise InvalidInputError(
                f"invalid component weight {part!r} in {text!r}: use unet=W,te=W"
            )
        parts[key] = _parse_float(value, text)
    return MixMember(ref=ref, weight=parts.get("unet", 1.0), te_weight=parts.get("te"))


def weight_warnings(members: list[MixMember]) -> list[str]:
    """Warnings for weights beyond ±WEIGHT_WARN_LIMIT (allowed, but usually a typo)."""
    out = []
    for m in members:
        for w in (m.weight, m.te_weight, *(m.block_weights or {}).values()):
            if w is not None and abs(w) > WEIGHT_WARN_LIMIT:
                out.append(f"weight {w} for {m.ref} is beyond ±{WEIGHT_WARN_LIMIT:g}")
                break
    return out


@dataclass(frozen=True)
class AdapterSpec:
    """A resolved adapter as the inference engine and ops receive it (no registry needed).

    `key` identifies the applied weights (tensor hash + file hash, so metadata such as a PEFT
    alpha counts; else path + size + mtime): the engine caches by it;
    `hash` is the AutoV3 (12 hex) shown in PNG "Lora hashes".
    """

    name: str
    path: str
    key: str
    weight: float = 1.0
    te_weight: float | None = None
    block_weights: dict[str, float] | None = field(default=None, hash=False, compare=True)
    hash: str | None = None
    base_family: str | None = None
    network_type: str = "lora"

    @property
    def text_weight(self) -> float:
        return self.weight if self.te_weight is None else self.te_weight

    def to_json(self) -> dict[str, Any]:
        """How records (PNG text, merge/fuse lineage) name an input: name, weights, AutoV3."""
        return {
            "name": self.name,
            "weight": self.weight,
            "te_weight": self.te_weight,
            "block_weights": self.block_weights,
            "hash": self.hash,
        }
