"""A mix from a picture: the LoRA stack an A1111, ComfyUI or lorahub image was made with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.errors import InvalidInputError, NotFoundError
from lorahub.library.imagemeta import ImageRecipe, RecipeMember, read_recipe
from lorahub.types import MixMember

if TYPE_CHECKING:
    from lorahub.registry import Registry


@dataclass
class FromImage:
    """What `mix from-image` found: the recipe, each member's match, what is missing, the mix."""

    image: str
    recipe: ImageRecipe
    found: list[tuple[RecipeMember, str, str]] = field(default_factory=list)  # (member, ref, how)
    missing: list[RecipeMember] = field(default_factory=list)
    mix: Any = None  # MixRecord when saved

    def missing_text(self) -> str:
        """The members not found, as `name (hash), name`: what the CLI and the server report."""
        return ", ".join(m.name + (f" ({m.hash})" if m.hash else "") for m in self.missing)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "recipe": self.recipe.to_json(),
            "found": [
                {
                    "name": m.name,
                    "hash": m.hash,
                    "weight": m.weight,
                    "te_weight": m.te_weight,
                    "adapter": ref,
                    "by": how,
                }
                for m, ref, how in self.found
            ],
            "missing": [{"name": m.name, "hash": m.hash} for m in self.missing],
            "mix": self.mix.to_json() if self.mix is not None else None,
        }


def resolve_member(registry: Registry, member: RecipeMember) -> tuple[str, str] | None:
    """(registry ref, "hash"|"name") of a recipe member: by AutoV3/AutoV2 hash first, then name."""
    for how, ref in (("hash", member.hash), ("name", member.name)):
        if not ref:
            continue
        try:
            return str(registry.get_adapter(ref).ref), how
        except (NotFoundError, InvalidInputError):
            continue
    return None


def mix_from_image(
    registry: Registry,
    image: str | os.PathLike[str],
    name: str,
    *,
    allow_missing: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> FromImage:
    """Read the image's LoRA stack, resolve every member, save it as mix `name` with the image's
    prompt and settings as its defaults. Nothing is saved while a member is missing, unless
    `allow_missing` (then the found ones are)."""
    recipe = read_recipe(image)
    if recipe is None:
        raise InvalidInputError(f"{Path(image).name} carries no generation parameters")
    if not recipe.members:
        raise InvalidInputError(f"{Path(image).name} ({recipe.tool}) was made without LoRAs")
    result = FromImage(str(image), recipe)
    for member in recipe.members:
        match = resolve_member(registry, member)
        if match is None:
            result.missing.append(member)
        else:
            result.found.append((member, *match))
    if dry_run or (result.missing and not allow_missing):
        return result
    if not result.found:
        raise NotFoundError("none of the image's LoRAs is registered: nothing to save")
    members = [MixMember(ref, m.weight, m.te_weight) for m, ref, _ in result.found]
    defaults = {**recipe.defaults(), "image": Path(image).name, "tool": recipe.tool}
    result.mix = registry.create_mix(
        name,
        members,
        description=f"from {Path(image).name} ({recipe.tool})",
        force=force,
        defaults=defaults,
    )
    return result
