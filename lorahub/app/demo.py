"""The demo: everything lorahub does, end to end, on the embedded tiny base."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.paths import lorahub_home

if TYPE_CHECKING:
    from lorahub.registry import Registry

Progress = Callable[..., None]


@dataclass
class DemoResult:
    """What the demo made, for the CLI to show."""

    base: Path
    example_files: list[Path] = field(default_factory=list)
    adapters: list[Any] = field(default_factory=list)  # registry records
    extras: dict[str, Any] = field(default_factory=dict)


def run_demo(progress: Progress | None = None, *, train_steps: int | None = None) -> DemoResult:
    """Build the tiny base, train the two example adapters and `demo-shapes` (which teaches the
    base the colour it never saw), register them, and draw the before/after grid."""
    from lorahub.examples import DEMO_ADAPTERS, write_example_adapter
    from lorahub.registry import Registry
    from lorahub.tiny import ensure_tiny

    step = progress or (lambda *a, **k: None)
    step(0, total=5, status="building the tiny base")
    result = DemoResult(base=ensure_tiny("tiny"))
    step(1, status="training the example adapters")
    folder = lorahub_home() / "examples"
    for spec in DEMO_ADAPTERS:
        dest = folder / f"{spec.name}.safetensors"
        if not dest.exists():
            write_example_adapter("tiny", dest, spec)
        result.example_files.append(dest)
    step(1, status="scanning into the registry")
    with Registry() as registry:
        registry.scan(folder)
        for spec in DEMO_ADAPTERS:
            registry.update_adapter(
                spec.name, description=spec.description, trigger_words=list(spec.trigger_words)
            )
            registry.tag(spec.name, ["example", "demo"])
    step(1, status=f"training {DEMO_TRAINED} on purple shapes")
    trained = train_demo_adapter(train_steps)
    result.extras["training"] = trained.to_json()
    step(1, status="drawing the before/after grid")
    with Registry() as registry:
        grid, generated = _draw(registry)
        result.extras["grid"] = str(grid)
        result.extras["generated"] = [str(p) for p in generated]
        result.adapters = registry.list_adapters(tags=["demo"])
    step(1, status="done")
    return result


DEMO_TRAINED = "demo-shapes"
DEMO_PROMPT = "a purple circle"
DEMO_STEPS = 300
GRID_PROMPTS = ("a purple circle", "a purple square", "a red circle", "a blue triangle")


def train_demo_adapter(steps: int | None = None) -> Any:
    """Train `demo-shapes` on the built-in purple shapes (the colour the base never saw) and
    register it (replacing an earlier demo's)."""
    from lorahub.app.train import train_adapter
    from lorahub.training import TrainConfig

    config = TrainConfig(
        data="demo",
        name=DEMO_TRAINED,
        resolution=64,
        max_train_steps=steps or DEMO_STEPS,
        batch_size=4,
        learning_rate=1e-3,
        rank=4,
        alpha=4.0,
        train_text_encoder=True,
        caption_dropout=0.1,
        validation_prompts=(DEMO_PROMPT, "a purple square"),
        tags=("demo",),
        trigger_words=("purple",),
        force=True,
        description="Trained by `lorahub demo` on purple shapes: teaches the tiny base purple.",
    )
    return train_adapter(config)


def _draw(registry: Registry) -> tuple[Path, list[Path]]:
    """The demo's grid (rows: prompts; columns: the base, demo-shapes at 0.5 and 1, the two
    examples) and the generated image, through the inference engine; PNGs in HOME/demo."""
    from lorahub.examples import DEMO_ADAPTERS
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.inference.grid import labelled_grid, save_grid
    from lorahub.inference.png import save_png
    from lorahub.types import MixMember

    columns: list[tuple[str, tuple[Any, ...]]] = [("base", ())]
    for name, weight in ((DEMO_TRAINED, 0.5), (DEMO_TRAINED, 1.0)):
        columns.append(
            (f"{name}:{weight:g}", tuple(registry.resolve_members([MixMember(name, weight)])))
        )
    for spec in DEMO_ADAPTERS:
        columns.append((spec.name, tuple(registry.resolve_members([MixMember(spec.name, 1.0)]))))
    out = lorahub_home() / "demo"
    with Engine(base="tiny") as engine:
        cells = [
            [
                engine.generate(GenerationRequest(prompt=p, adapters=a, seed=1)).images[0]
                for _, a in columns
            ]
            for p in GRID_PROMPTS
        ]
        result = engine.generate(
            GenerationRequest(prompt=DEMO_PROMPT, adapters=columns[2][1], seed=1)
        )
    grid = save_grid(
        labelled_grid(cells, list(GRID_PROMPTS), [c for c, _ in columns]), out / "grid.png"
    )
    return grid, save_png(result.images, result.record, out / "generated.png")
