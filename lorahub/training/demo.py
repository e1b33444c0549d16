"""The built-in synthetic data set: coloured shapes on plain backgrounds, captions that name them.

Drawn with PIL from a fixed seed, so every build is pixel-identical; the demo and the tests
train on it without any download.
"""

from __future__ import annotations

import random
from pathlib import Path

from lorahub.fileio import atomic_dir

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}


def demo_dataset(dest: str | Path, count: int = 24, size: int = 96, seed: int = 7) -> Path:
    """Write `count` shape images (PNG) with same-stem `.txt` captions into `dest`; return it."""
    from PIL import Image, ImageDraw

    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        rng = random.Random(seed)
        colours = list(COLOURS)
        for i in range(count):
            shape, colour = SHAPES[i % len(SHAPES)], colours[(i // len(SHAPES)) % len(colours)]
            img = Image.new("RGB", (size, size), _background(rng))
            _draw_shape(ImageDraw.Draw(img), shape, COLOURS[colour], size, rng)
            stem = f"{i:03d}-{colour}-{shape}"
            img.save(tmp / f"{stem}.png", optimize=False)
            (tmp / f"{stem}.txt").write_text(f"a {colour} {shape}")
    return dest


def _background(rng: random.Random) -> tuple[int, int, int]:
    grey = rng.randint(225, 250)
    return (grey, grey, grey)


def _draw_shape(
    draw, shape: str, fill: tuple[int, int, int], size: int, rng: random.Random
) -> None:
    """Draw one shape of random size and position (kept inside the image)."""
    r = rng.uniform(0.22, 0.36) * size
    cx = rng.uniform(r, size - r)
    cy = rng.uniform(r, size - r)
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(((cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)), fill=fill)
