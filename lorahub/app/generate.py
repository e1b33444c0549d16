"""A generation order to a checked `GenerationRequest`, and its images to PNGs carrying the record.

`lorahub generate`, `lorahub grid`, `POST /v1/generate` and `POST /v1/adapters/{ref}/preview` all
resolve here: `<lora:>` tags parsed, names resolved against the registry (mix first), base family,
settings, weights and the work bound checked, before any engine runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.types import AdapterSpec, MixMember

if TYPE_CHECKING:
    from lorahub.inference.requests import GenerationRequest, GenerationResult
    from lorahub.registry import Registry

Warn = Callable[[str], None]


@dataclass(frozen=True)
class GenerationOrder:
    """What a client asks for: a prompt (its `<lora:>` tags included), a mix, weighted adapters,
    and the `GenerationRequest` settings it set (None or absent: the engine's default)."""

    prompt: str
    adapters: tuple[MixMember, ...] = ()
    mix: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The base a request runs on: its name in messages, its family (asked once it is needed:
    `family_of`, else read from the base), and the work bound (0: none)."""

    base: str
    label: str | None = None
    max_work: int = 0
    family_of: Callable[[], str | None] | None = None

    @property
    def name(self) -> str:
        """How error messages name the base."""
        return self.base if self.label is None else self.label

    def family(self) -> str | None:
        """The family adapters must be made for (None: unknown, no check)."""
        if self.family_of is not None:
            return self.family_of()
        from lorahub.inference.pipelines import base_family

        return base_family(self.base)


@dataclass(frozen=True)
class RecordedImages:
    """The PNGs of one result (each with the record in its text chunks) and the files written."""

    pngs: list[bytes]
    paths: list[Path]
    record: dict[str, Any]


def resolve_generation(
    registry: Registry, order: GenerationOrder, target: Target, warn: Warn | None = None
) -> GenerationRequest:
    """The order as a GenerationRequest: adapters resolved (mix first), every check passed.

    `warn` hears the weights that are allowed but unusual (e.g. above 2)."""
    from lorahub.inference.pipelines import check_families

    prompt, specs = resolve_prompt(registry, order.prompt, order.adapters, order.mix, warn)
    check_families(specs, target.family(), target.name)
    return build_request(prompt, specs, order.settings, target)


def resolve_prompt(
    registry: Registry,
    text: str,
    members: Iterable[MixMember],
    mix: str | None,
    warn: Warn | None = None,
) -> tuple[str, list[AdapterSpec]]:
    """The prompt without `<lora:>` tags, and the specs of `mix`, `members` and the tags."""
    from lorahub.inference.requests import parse_prompt_tags
    from lorahub.types import weight_warnings

    prompt, tag_members = parse_prompt_tags(text)
    wanted = [*members, *tag_members]
    if warn is not None:
        for message in weight_warnings(wanted):
            warn(message)
    return prompt, registry.resolve_request(wanted, mix)


def resolve_preview(
    registry: Registry,
    ref: str,
    prompt: str | None,
    settings: Mapping[str, Any],
    target: Target,
) -> GenerationRequest:
    """One adapter at weight 1 on `prompt`, else its trigger words, else its name (a preview)."""
    from lorahub.inference.pipelines import check_families

    record = registry.get_adapter(ref)
    spec = registry.resolve_members([MixMember(ref=record.ref)])[0]
    check_families([spec], target.family(), target.name)
    text = prompt or ", ".join(record.trigger_words) or spec.name
    return build_request(text, [spec], settings, target)


def resolve_grid(
    registry: Registry,
    adapter: str,
    prompts: Sequence[str],
    mix: str | None,
    target: Target,
    warn: Warn | None = None,
) -> tuple[AdapterSpec, list[tuple[str, tuple[AdapterSpec, ...]]]]:
    """The axis adapter's spec, and each prompt without its tags with its fixed specs (checked)."""
    from lorahub.inference.pipelines import check_families
    from lorahub.types import parse_weighted_ref

    axis = registry.resolve_members([parse_weighted_ref(adapter)])[0]
    rows = []
    for text in prompts:
        prompt, specs = resolve_prompt(registry, text, (), mix, warn)
        rows.append((prompt, tuple(specs)))
    check_families([axis, *(s for _, fixed in rows for s in fixed)], target.family(), target.name)
    return axis, rows


def build_request(
    prompt: str, specs: Sequence[AdapterSpec], settings: Mapping[str, Any], target: Target
) -> GenerationRequest:
    """A validated GenerationRequest within the target's work bound; None settings keep defaults."""
    from lorahub.app.work import check_work
    from lorahub.inference.pipelines import scheduler_class
    from lorahub.inference.requests import GenerationRequest

    fields = {key: value for key, value in settings.items() if value is not None}
    if "scheduler" in fields:
        scheduler_class(fields["scheduler"])  # an unknown name fails now, not after loading
    gen = GenerationRequest(prompt=prompt, adapters=tuple(specs), **fields)
    gen.validate()
    if target.max_work:
        check_work(gen, target.family(), target.max_work)
    return gen


def record_result(result: GenerationResult, dest: str | Path | None = None) -> RecordedImages:
    """Each image as PNG bytes with the record's text chunks; written to `dest` when given
    (`dest` itself for one image, else STEM-000.png, ...)."""
    from lorahub.inference.png import png_bytes, write_pngs

    pngs = [png_bytes(image, result.record, i) for i, image in enumerate(result.images)]
    paths = write_pngs(pngs, dest) if dest is not None else []
    return RecordedImages(pngs=pngs, paths=paths, record=result.record)
