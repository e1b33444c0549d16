"""Validation images (fixed seeds, so before and after are comparable) and the before/after grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_path
from lorahub.training.config import TrainConfig
from lorahub.training.setup import Models

LABEL_HEIGHT = 14


def render_samples(
    m: Models, cfg: TrainConfig, prompts: list[str], folder: Path, size: tuple[int, int]
) -> list[Path]:
    """One image per prompt (seed = validation_seed + i) with the models as they are now."""
    import contextlib

    import torch

    autocast: Any = contextlib.nullcontext()
    if m.weight_dtype != torch.float32:
        autocast = torch.autocast(m.device.type, dtype=m.weight_dtype)
    was_training = [(model, model.training) for _, model in m.trained]
    paths = []
    try:
        with torch.no_grad(), autocast:
            for i, prompt in enumerate(prompts):
                gen = torch.Generator(device=m.device).manual_seed(cfg.validation_seed + i)
                image = m.pipe(
                    prompt,
                    num_inference_steps=cfg.validation_inference_steps,
                    generator=gen,
                    width=size[0],
                    height=size[1],
                ).images[0]
                paths.append(save_png(image, folder / f"sample-{i:02d}.png"))
    finally:
        for model, training in was_training:
            model.train(training)
    return paths


def save_png(image: Any, dest: Path) -> Path:
    """Write a PIL image as PNG atomically."""
    with atomic_path(dest, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return dest


def before_after_grid(
    before: list[Path], after: list[Path], prompts: list[str], dest: Path
) -> Path:
    """Rows = prompts, columns = before | after, each labelled."""
    from PIL import Image, ImageDraw

    opened = [
        (Image.open(b).convert("RGB"), Image.open(a).convert("RGB"))
        for b, a in zip(before, after, strict=True)
    ]
    w, h = opened[0][0].size
    grid = Image.new("RGB", (2 * w, LABEL_HEIGHT + len(opened) * (h + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((2, 1), "before", fill="black")
    draw.text((w + 2, 1), "after", fill="black")
    for row, ((b, a), prompt) in enumerate(zip(opened, prompts, strict=True)):
        top = LABEL_HEIGHT + row * (h + LABEL_HEIGHT)
        draw.text((2, top + 1), prompt[: max(8, 2 * w // 6)], fill="black")
        grid.paste(b, (0, top + LABEL_HEIGHT))
        grid.paste(a, (w, top + LABEL_HEIGHT))
    return save_png(grid, dest)
