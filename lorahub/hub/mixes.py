"""Staging a mix for the Hub: the baked adapter (a `cat` merge), or a JSON recipe of Hub members."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.errors import InvalidInputError
from lorahub.hub.card import mix_card
from lorahub.hub.stage import WEIGHT_NAME, Staged

if TYPE_CHECKING:
    from lorahub.registry.records import AdapterRecord, MixRecord
    from lorahub.types import AdapterSpec

MixParts = tuple["MixRecord", "Sequence[AdapterRecord]", "Sequence[AdapterSpec] | None"]

RECIPE_NAME = "lorahub_recipe.json"


def member_entry(record: AdapterRecord, member: Any, need_hub: bool) -> dict[str, Any]:
    """One member as the recipe and the card name it: Hub repo, revision, commit, weights, hashes."""
    pubs = [p for p in record.publications if p.commit_sha]
    if need_hub and not pubs:
        raise InvalidInputError(
            f"mix member {record.ref} is not published on the Hub: push it first (lorahub push {record.ref} --repo OWNER/NAME)"
        )
    pub = pubs[-1] if pubs else None
    return {
        "name": record.ref,
        "repo": pub.repo if pub else None,
        "revision": pub.revision if pub else None,
        "commit_sha": pub.commit_sha if pub else None,
        "weight_name": WEIGHT_NAME if pub else None,
        "weight": member.weight,
        "te_weight": member.te_weight,
        "block_weights": member.block_weights,
        "sha256": record.sha256,
        "autov3": record.autov3,
        "trigger_words": list(record.trigger_words),
    }


def recipe_json(mix: MixRecord, members: list[dict[str, Any]]) -> bytes:
    """The recipe file: deterministic JSON naming each member by Hub repo and hash."""
    data = {
        "lorahub_recipe": 1,
        "name": mix.name,
        "description": mix.description,
        "base_family": mix.base_family,
        "members": members,
    }
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def stage_mix(
    parts: MixParts, repo: str, tmp: Path, license: str | None, recipe: bool
) -> tuple[Staged, str]:
    """Stage a mix given as (record, member records, resolved member specs; None with `recipe`):
    `recipe` → lorahub_recipe.json; else the members merged with `cat` into one file."""
    mix, records, specs = parts
    members = [member_entry(r, m, recipe) for r, m in zip(records, mix.members, strict=True)]
    staged = Staged(mix.name, "mix")
    if recipe:
        (tmp / RECIPE_NAME).write_bytes(recipe_json(mix, members))
        staged.add(tmp / RECIPE_NAME, RECIPE_NAME, "recipe")
    else:
        assert specs is not None, "a baked mix needs its resolved members"
        staged.add(bake(specs, tmp / WEIGHT_NAME), WEIGHT_NAME, "weights")
    card = mix_card(mix, repo, staged.hub_files, members, license=license, recipe=recipe)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    staged.add(tmp / "README.md", "README.md", "card")
    return staged, card


def bake(specs: Sequence[AdapterSpec], dest: Path) -> Path:
    """Merge a mix's resolved members (weights applied) into one diffusers-format adapter,
    exactly (`cat`)."""
    from lorahub.ops.merge import MergeOptions, merge_adapters

    merge_adapters(specs, dest, MergeOptions(method="cat"), format="diffusers")
    return dest
