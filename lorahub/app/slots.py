"""Slot planning for compiled serving: the adapters whose shapes size the hot-swap slots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lorahub.types import AdapterSpec, MixMember

if TYPE_CHECKING:
    from lorahub.registry import Registry


def plan_slot_specs(
    registry: Registry, base: str, refs: tuple[str, ...]
) -> tuple[AdapterSpec, ...]:
    """The adapters that plan compiled mode's slots: `refs`, else every hot-swappable one for `base`."""
    from lorahub.inference import hotswap
    from lorahub.inference.pipelines import base_family, check_families

    family = base_family(base)
    if refs:
        specs = registry.resolve_members([MixMember(ref=r) for r in refs])
        check_families(specs, family, base)
        for spec in specs:
            hotswap.check_spec(spec)
        return tuple(specs)
    return usable_slot_specs(registry, base, family)


def usable_slot_specs(registry: Registry, base: str, family: str | None) -> tuple[AdapterSpec, ...]:
    """Every registered plain LoRA for `family` whose file is there (one by one: a mix's
    one-family rule must not apply across the registry)."""
    from lorahub.errors import InvalidInputError, LorahubError
    from lorahub.inference import hotswap
    from lorahub.inference.pipelines import check_families

    usable = []
    for record in registry.list_adapters():
        try:
            spec = registry.resolve_members([MixMember(ref=record.ref)])[0]
            check_families([spec], family, base)
            hotswap.check_spec(spec)
        except LorahubError:
            continue
        if Path(spec.path).is_file():  # a moved or deleted file must not stop the server
            usable.append(spec)
    if not usable:
        raise InvalidInputError(
            f"--compile plans its hot-swap slots from registered adapters, and none is a plain "
            f"LoRA for {base}: register one, or name them with --slot-adapter"
        )
    return tuple(usable)
