"""Comparison grids (A1111's X/Y plot): one adapter's weights across, prompts x seeds down.

Every cell is a request that differs from the others only in its adapter weight, prompt or seed,
so the whole grid runs as heterogeneous batches (`Engine.generate_batch`): a cell's image is the
one `generate` makes for the same request. Writes one labelled PNG and each cell as its own PNG
with its record (`<stem>-cells/r<row>-c<col>.png`). Receives resolved `AdapterSpec`s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lorahub.errors import InvalidInputError
from lorahub.inference.requests import GenerationRequest
from lorahub.types import AdapterSpec, check_weight

MAX_CELLS = 256


@dataclass(frozen=True)
class GridRow:
    """One prompt (its `<lora:>` tags and mix already resolved into `fixed`) and one seed."""

    prompt: str
    seed: int
    fixed: tuple[AdapterSpec, ...] = ()


@dataclass(frozen=True)
class GridPlan:
    """The axis adapter, its weights (columns), the rows, and the settings every cell shares."""

    adapter: AdapterSpec
    weights: tuple[float, ...]
    rows: tuple[GridRow, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def label_rows(self) -> list[str]:
        """`seed: S`, with the prompt when the grid has several."""
        several = len({r.prompt for r in self.rows}) > 1
        return [f"{r.prompt}, seed: {r.seed}" if several else f"seed: {r.seed}" for r in self.rows]

    def label_columns(self) -> list[str]:
        return [f"{self.adapter.name}: {w:g}" for w in self.weights]


@dataclass
class GridResult:
    """The grid file and every cell's file and record, row by row."""

    grid: Path
    cells: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"grid": str(self.grid), "cells": self.cells}


def parse_axis(text: str, option: str, kind: type) -> tuple[Any, ...]:
    """`0,0.5,1` as numbers of `kind`; one clear line for an empty axis or a value that is no number."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise InvalidInputError(f"{option} {text!r}: an empty axis or value; give e.g. 0,0.5,1")
    try:
        values = tuple(kind(t) for t in items)
    except ValueError:
        bad = next(t for t in items if not _parses(t, kind))
        what = "number" if kind is float else "whole number"
        raise InvalidInputError(f"{option}: {bad!r} is not a {what}") from None
    if kind is float:
        for v in values:
            check_weight(v, option)
    elif any(v < 0 or v >= 2**63 for v in values):
        raise InvalidInputError(f"{option}: seeds must be between 0 and 2**63-1")
    return values


def _parses(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def plan_grid(
    adapter: AdapterSpec,
    weights: tuple[float, ...],
    prompts: list[tuple[str, tuple[AdapterSpec, ...]]],
    seeds: tuple[int, ...],
    **settings: Any,
) -> GridPlan:
    """The grid of `prompts` (each with its fixed adapters) x `seeds` down, `weights` across."""
    if not prompts:
        raise InvalidInputError("a grid needs a prompt")
    cells = len(prompts) * len(seeds) * len(weights)
    if cells > MAX_CELLS:
        raise InvalidInputError(
            f"the grid has {cells} cells, more than {MAX_CELLS}: use fewer weights, seeds or prompts"
        )
    rows = tuple(GridRow(p, s, tuple(fixed)) for p, fixed in prompts for s in seeds)
    return GridPlan(adapter, tuple(weights), rows, dict(settings))


def cell_requests(plan: GridPlan) -> list[list[GenerationRequest]]:
    """The request of every cell: the row's fixed adapters plus the axis adapter at its weight."""
    out = []
    for row in plan.rows:
        others = [s for s in row.fixed if s.name != plan.adapter.name]
        out.append(
            [
                GenerationRequest(
                    prompt=row.prompt,
                    seed=row.seed,
                    adapters=(*others, replace(plan.adapter, weight=w)),
                    **plan.settings,
                )
                for w in plan.weights
            ]
        )
    return out


def render_grid(
    plan: GridPlan,
    output: str | Path,
    *,
    engine: Any = None,
    progress: Callable[..., None] | None = None,
    **engine_options: Any,
) -> GridResult:
    """Run every cell (batched), write the labelled grid to `output` and the cells beside it."""
    from lorahub.inference.engine import Engine
    from lorahub.inference.grid import labelled_grid, save_grid
    from lorahub.inference.png import save_png

    requests = cell_requests(plan)
    for row in requests:
        for req in row:
            req.validate()
    own = engine is None
    engine = engine or Engine(base=plan.settings.get("base") or "tiny", **engine_options)
    try:
        flat = [req for row in requests for req in row]
        if progress:
            progress(n=0, total=len(flat), status=f"{len(flat)} cells")
        results = engine.generate_batch(flat)
        if progress:
            progress(n=len(flat))
    finally:
        if own:
            engine.close()
    output = Path(output)
    folder = output.with_name(f"{output.stem}-cells")
    cols = len(plan.weights)
    cells, images = [], []
    for i, result in enumerate(results):
        r, c = divmod(i, cols)
        path = save_png(result.images[:1], result.record, folder / f"r{r:02d}-c{c:02d}.png")[0]
        cells.append({"row": r, "column": c, "file": str(path), "record": result.record})
        images.append(result.images[0])
    grid = labelled_grid(
        [images[r * cols : (r + 1) * cols] for r in range(len(plan.rows))],
        plan.label_rows(),
        plan.label_columns(),
        scale=max(1, min(4, 128 // images[0].size[0])),  # small cells enlarged, crisp
    )
    return GridResult(save_grid(grid, output), cells)
