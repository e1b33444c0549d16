"""The demo: everything lorahub does, end to end, on the embedded tiny base."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorahub.paths import lorahub_home

Progress = Callable[..., None]


@dataclass
class DemoResult:
    """What the demo made, for the CLI to show."""

    base: Path
    example_files: list[Path] = field(default_factory=list)
    adapters: list[Any] = field(default_factory=list)  # registry records
    extras: dict[str, Any] = field(default_factory=dict)


def run_demo(progress: Progress | None = None, *, train_steps: int = 30) -> DemoResult:
    """Build the tiny base, write two example adapters, scan them into the registry."""
    from lorahub.examples import DEMO_ADAPTERS, write_example_adapter
    from lorahub.registry import Registry
    from lorahub.tiny import ensure_tiny

    step = progress or (lambda *a, **k: None)
    step(0, total=3, status="building the tiny base")
    result = DemoResult(base=ensure_tiny("tiny"))
    step(1, status="writing example adapters")
    folder = lorahub_home() / "examples"
    for spec in DEMO_ADAPTERS:
        dest = folder / f"{spec.name}.safetensors"
        if not dest.exists():
            write_example_adapter("tiny", dest, spec)
        result.example_files.append(dest)
    step(1, status="scanning into the registry")
    registry = Registry()
    registry.scan(folder)
    for spec in DEMO_ADAPTERS:
        registry.update_adapter(spec.name, description=spec.description, trigger_words=list(spec.trigger_words))
        registry.tag(spec.name, ["example"])
    result.adapters = registry.list_adapters(tags=["example"])
    step(1, status="done")
    return result
