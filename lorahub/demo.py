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
    step(0, total=5, status="building the tiny base")
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
        registry.update_adapter(
            spec.name, description=spec.description, trigger_words=list(spec.trigger_words)
        )
        registry.tag(spec.name, ["example", "demo"])
    step(1, status=f"training {DEMO_TRAINED} on the demo shapes")
    trained = _train(train_steps)
    result.extras["training"] = trained.to_json()
    step(1, status=f"generating with {DEMO_TRAINED}")
    result.extras["generated"] = [str(p) for p in _generate(registry)]
    result.adapters = registry.list_adapters(tags=["demo"])
    step(1, status="done")
    return result


DEMO_TRAINED = "demo-shapes"
DEMO_PROMPT = "a red circle"


def _train(steps: int) -> Any:
    """Train a small LoRA on the synthetic shapes (or reuse the one an earlier demo trained)."""
    from lorahub.training import TrainConfig, train

    config = TrainConfig(
        data="demo", name=DEMO_TRAINED, resolution=64, max_train_steps=steps, batch_size=2,
        learning_rate=1e-3, rank=4, alpha=4.0, validation_prompts=(DEMO_PROMPT, "a blue square"),
        validation_inference_steps=8, tags=("demo",), trigger_words=("shape",), force=True,
        description="Trained by `lorahub demo` on the synthetic coloured shapes.",
    )  # fmt: skip
    return train(config)


def _generate(registry: Any) -> list[Path]:
    """Generate with the trained adapter through the inference engine; PNGs beside the demo."""
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.inference.png import save_png
    from lorahub.types import MixMember

    specs = registry.resolve_members([MixMember(DEMO_TRAINED, 1.0)])
    request = GenerationRequest(
        prompt=DEMO_PROMPT, adapters=tuple(specs), steps=8, seed=1, base="tiny"
    )
    with Engine(base="tiny") as engine:
        result = engine.generate(request)
    return save_png(result.images, result.record, lorahub_home() / "demo" / "generated.png")
