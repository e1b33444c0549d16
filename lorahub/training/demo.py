"""The synthetic world: coloured shapes on a light grey background, captions that name them.

Drawn with PIL from a seed, so every build is pixel-identical; the tiny bases are pretrained on
it (`lorahub.pretrain`), and the demo and the tests train adapters on it without any download.
Purple is held out: the bases never see it, so an adapter that teaches it has a visible effect.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_dir

SHAPES = ("circle", "square", "triangle")
COLOURS = {  # the colours the tiny bases are pretrained on
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
HELD_OUT = {"purple": (150, 60, 200)}  # never shown to the bases: what the demo adapter teaches
ALL_COLOURS = {**COLOURS, **HELD_OUT}
DARK = (40, 40, 48)  # the background `example-style` teaches


def demo_dataset(
    dest: str | Path,
    count: int = 24,
    size: int = 96,
    seed: int = 7,
    colours: tuple[str, ...] = tuple(COLOURS),
    background: str = "light",
    outline: bool = False,
    tint: str | None = None,
) -> Path:
    """Write `count` shape images (PNG) with same-stem `.txt` captions into `dest`; return it.

    Shapes cycle through SHAPES, colours through `colours`; `background="dark"` draws on a dark
    background, `outline=True` draws outlines instead of filled shapes, `tint="pastel"` light
    (half-white) colours and `tint="grey"` each colour's grey (the example adapters' data sets;
    captions name the colour as usual)."""
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        rng = random.Random(seed)
        for i in range(count):
            shape, colour = SHAPES[i % len(SHAPES)], colours[(i // len(SHAPES)) % len(colours)]
            img = draw_scene(
                shape, colour, size, rng, background=background, outline=outline, tint=tint
            )
            stem = f"{i:03d}-{colour}-{shape}"
            img.save(tmp / f"{stem}.png", optimize=False)
            (tmp / f"{stem}.txt").write_text(caption(colour, shape))
    return dest


def caption(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def draw_scene(
    shape: str,
    colour: str,
    size: int,
    rng: random.Random,
    *,
    background: str = "light",
    outline: bool = False,
    tint: str | None = None,
) -> Any:
    """One picture of the world: a shape of random size and position on a plain background."""
    from PIL import Image, ImageDraw

    bg = background_colour(rng) if background == "light" else DARK
    img = Image.new("RGB", (size, size), bg)
    fill = tinted(ALL_COLOURS[colour], tint)
    _draw_shape(ImageDraw.Draw(img), shape, fill, size, rng, outline)
    return img


def tinted(rgb: tuple[int, int, int], tint: str | None) -> tuple[int, int, int]:
    """A world colour as the example styles draw it: "pastel" (half white), "grey" (its luma)."""
    if tint == "pastel":
        return (rgb[0] + 255) // 2, (rgb[1] + 255) // 2, (rgb[2] + 255) // 2
    if tint == "grey":
        luma = round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
        return luma, luma, luma
    return rgb


def random_scene(rng: random.Random, size: int) -> tuple[Any, str]:
    """A random scene of a seen colour and its caption (the pretraining stream)."""
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    return draw_scene(shape, colour, size, rng), caption(colour, shape)


def any_scene(rng: random.Random, size: int) -> Any:
    """A scene of any hue on a grey of any brightness, filled or outlined (the VAE's stream: an
    autoencoder must reproduce every colour, purple and dark backgrounds included, as Stable
    Diffusion's VAE saw all of LAION; the UNet and text encoders see only `random_scene`)."""
    import colorsys

    from PIL import Image, ImageDraw

    grey = rng.randint(225, 250) if rng.random() < 0.5 else rng.randint(0, 255)
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.choice((1, 1, 2))):
        hue, sat, val = rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.5, 1.0)
        fill = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))
        _draw_shape(draw, rng.choice(SHAPES), fill, size, rng, outline=rng.random() < 0.3)  # type: ignore[arg-type]
    return img


def background_colour(rng: random.Random) -> tuple[int, int, int]:
    grey = rng.randint(225, 250)
    return (grey, grey, grey)


def _draw_shape(
    draw: Any,
    shape: str,
    fill: tuple[int, int, int],
    size: int,
    rng: random.Random,
    outline: bool = False,
) -> None:
    """Draw one shape of random size and position (kept inside the image)."""
    r = rng.uniform(0.22, 0.36) * size
    cx = rng.uniform(r, size - r)
    cy = rng.uniform(r, size - r)
    style: dict[str, Any] = (
        {"outline": fill, "width": max(2, size // 16)} if outline else {"fill": fill}
    )
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), **style)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), **style)
    else:
        points = ((cx, cy - r), (cx + r, cy + r), (cx - r, cy + r))
        if outline:
            draw.line((*points, points[0]), fill=fill, width=style["width"], joint="curve")
        else:
            draw.polygon(points, fill=fill)
