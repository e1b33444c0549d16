"""A labelled picture grid: rows and columns named, each cell an image (PIL only, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_path

LABEL = 14  # pixels of a label line


def labelled_grid(
    cells: list[list[Any]], rows: list[str], columns: list[str], *, scale: int = 2
) -> Any:
    """One image: `cells[r][c]` (PIL images of one size) scaled by `scale` (nearest, so small
    pictures stay crisp), column labels on top, row labels above each row."""
    from PIL import Image, ImageDraw

    w, h = cells[0][0].size
    w, h = w * scale, h * scale
    grid = Image.new("RGB", (len(columns) * w, LABEL + len(rows) * (h + LABEL)), "white")
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(columns):
        draw.text((c * w + 2, 1), _fit(text, w), fill="black")
    for r, (text, row) in enumerate(zip(rows, cells, strict=True)):
        top = LABEL + r * (h + LABEL)
        draw.text((2, top + 1), _fit(text, len(columns) * w), fill="black")
        for c, image in enumerate(row):
            grid.paste(image.convert("RGB").resize((w, h), Image.NEAREST), (c * w, top + LABEL))
    return grid


def save_grid(grid: Any, dest: str | Path) -> Path:
    dest = Path(dest)
    with atomic_path(dest, suffix=".png") as tmp:
        grid.save(tmp, format="PNG")
    return dest


def _fit(text: str, width: int) -> str:
    limit = max(4, width // 6)  # the default bitmap font is ~6 px a character
    return text if len(text) <= limit else text[: limit - 1] + "…"
