"""A mix from example images: the weights that best denoise them (`lorahub mix search`).

Everything a user can get wrong (the mix name, the adapters, their family, the images and their
captions, the budget) is checked before any model is loaded; nothing is saved unless the search
ran to the end. The scoring and the optimiser live in `lorahub.ops.search`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.errors import AlreadyExistsError, InvalidInputError, TrainingError
from lorahub.ops.search import SearchOptions, WeightSearch
from lorahub.types import AdapterSpec, MixMember, check_name

if TYPE_CHECKING:
    from lorahub.registry import Registry

MIN_IMAGES, MAX_IMAGES = 2, 32


@dataclass(frozen=True)
class SearchResult:
    """The saved mix and the search that found its weights."""

    mix: Any  # MixRecord
    search: WeightSearch

    def to_json(self) -> dict[str, Any]:
        return {**self.search.to_json(), "mix": self.mix.to_json()}


@dataclass(frozen=True)
class SearchPlan:
    """What a search needs, checked: the adapters and the (image, caption) examples."""

    specs: list[AdapterSpec]
    examples: list[tuple[Any, str]]
    images: Path
    prompt: str


def plan_search(
    registry: Registry,
    name: str,
    adapters: Sequence[str],
    images: str | os.PathLike[str],
    *,
    prompt: str | None = None,
    base: str = "tiny",
    options: SearchOptions = SearchOptions(),
    force: bool = False,
) -> SearchPlan:
    """Check every input, one clear line each, without loading a model."""
    from lorahub.inference.pipelines import base_family, check_families

    options.check()
    check_name(name, "mix name")
    if not force and any(m.name == name for m in registry.list_mixes()):
        raise AlreadyExistsError(f"mix {name!r} exists (use --force to replace it)")
    if not adapters:
        raise InvalidInputError("give the adapters to mix: --adapter NAME, at least one")
    specs = registry.resolve_members([MixMember(ref) for ref in adapters])
    check_families(specs, base_family(base), base)
    examples = read_examples(images, prompt)
    return SearchPlan(specs, examples, Path(images), prompt or examples[0][1])


def read_examples(folder: str | os.PathLike[str], prompt: str | None) -> list[tuple[Any, str]]:
    """(image, caption) of each example in `folder` (the training data layouts: IMG.png + IMG.txt,
    metadata.jsonl, a datasets folder); `prompt` captions the images that have none."""
    from lorahub.training.data import load_dataset

    try:
        data = load_dataset(Path(folder), instance_prompt=prompt)
    except TrainingError as exc:
        raise InvalidInputError(exc.message.replace("--instance-prompt", "--prompt")) from None
    count = len(data.examples)
    if count < MIN_IMAGES:
        raise InvalidInputError(
            f"{folder} has {count} example image; a search needs at least {MIN_IMAGES}"
            " (one picture cannot tell the concept from the picture)"
        )
    if count > MAX_IMAGES:
        raise InvalidInputError(
            f"{folder} has {count} images; every evaluation scores them all, give at most {MAX_IMAGES}"
        )
    return [(data.open(i), ex.caption) for i, ex in enumerate(data.examples)]


def search_mix(
    registry: Registry,
    name: str,
    adapters: Sequence[str],
    images: str | os.PathLike[str],
    *,
    prompt: str | None = None,
    base: str = "tiny",
    options: SearchOptions = SearchOptions(),
    force: bool = False,
    device: str | None = None,
    progress: Callable[..., None] | None = None,
) -> SearchResult:
    """Find the weights of `adapters` that best denoise the example images and save them as mix
    `name` (its default prompt: `prompt`, else the first caption; its details: the search)."""
    plan = plan_search(
        registry, name, adapters, images, prompt=prompt, base=base, options=options, force=force
    )
    from lorahub.inference import Engine  # torch: only once the inputs are known to be good
    from lorahub.ops.search import MixScorer, search_weights

    with Engine(base=base, device=device) as engine:
        scorer = MixScorer(
            engine.runtime(),
            plan.specs,
            plan.examples,
            seed=options.seed,
            timesteps=options.timesteps,
        )
        found = search_weights(scorer, options, progress)
    members = [MixMember(s.name, w) for s, w in zip(plan.specs, found.weights, strict=True)]
    details = {"search": {**found.to_json(), "folder": str(plan.images), "base": base}}
    mix = registry.create_mix(
        name,
        members,
        force=force,
        defaults={"prompt": plan.prompt},
        details=details,
        description=f"found by mix search on {len(plan.examples)} images of {plan.images.name}",
    )
    return SearchResult(mix, found)
