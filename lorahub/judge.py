"""A deterministic judge of pictures of the synthetic world: which colour, which shape, what
background, how saturated. Used by the tests and `benchmarks/draws.py` to measure what the tiny bases and the
adapters trained on them draw (no torch: numpy and PIL only).

Colour: the mean of the pixels that stand out from the background (the border's median), named
by the world colour of the nearest hue, or "grey" when it is hardly saturated (a washed-out green
is still green; naming by RGB distance called it purple, the world colour nearest to grey). Shape: how much of the foreground's bounding box it fills
(square ~1, circle ~pi/4, triangle ~1/2), with the triangle told apart by its rows widening
downwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorahub.training.demo import ALL_COLOURS, DARK

FOREGROUND = 60.0  # distance (RGB) from the background above which a pixel is foreground
MIN_PIXELS = 12  # fewer foreground pixels than this: nothing was drawn
GREY, PASTEL = 0.2, 0.6  # saturation below GREY: grey; below PASTEL (and light): pastel


@dataclass(frozen=True)
class Verdict:
    colour: str | None  # world colour of the nearest hue, "grey", None when nothing stands out
    shape: str | None
    background: str  # "light" or "dark"
    foreground: float  # share of the image that is foreground
    mean_rgb: tuple[float, float, float] | None
    fill: float | None  # foreground share of its bounding box
    hollow: bool = False  # the middle of the shape is background: an outline

    @property
    def saturation(self) -> float | None:
        """HSV saturation of the shape's mean colour: ~0.8 for the world's colours, ~0.35 for
        their pastels, ~0 for their greys."""
        if not self.mean_rgb:
            return None
        hi, lo = max(self.mean_rgb), min(self.mean_rgb)
        return (hi - lo) / hi if hi else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "colour": self.colour,
            "shape": self.shape,
            "background": self.background,
            "foreground": round(self.foreground, 4),
            "mean_rgb": [round(c, 1) for c in self.mean_rgb] if self.mean_rgb else None,
            "fill": round(self.fill, 4) if self.fill is not None else None,
            "hollow": self.hollow,
        }


def judge(image: Any) -> Verdict:
    """The verdict on one picture (a PIL image or an HxWx3 uint8 array)."""
    import numpy as np

    px = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, np.float32)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    bg = np.median(border, axis=0)
    background = "dark" if bg.mean() < 128 else "light"
    fg = np.linalg.norm(px - bg, axis=-1) > FOREGROUND
    share = float(fg.mean())
    if fg.sum() < MIN_PIXELS:
        return Verdict(None, None, background, share, None, None)
    mean = px[fg].mean(axis=0)
    colour = colour_name((float(mean[0]), float(mean[1]), float(mean[2])))
    shape, fill, hollow = _shape(fg)
    rgb = (float(mean[0]), float(mean[1]), float(mean[2]))
    return Verdict(colour, shape, background, share, rgb, fill, hollow)


def _hue(rgb: tuple[float, float, float]) -> float:
    """The HSV hue of `rgb`, in degrees."""
    import colorsys

    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360


HUES = {name: _hue((float(r), float(g), float(b))) for name, (r, g, b) in ALL_COLOURS.items()}


def colour_name(rgb: tuple[float, float, float]) -> str:
    """The world colour whose hue is nearest to `rgb`'s, or "grey" below `GREY` saturation."""
    hi, lo = max(rgb), min(rgb)
    if not hi or (hi - lo) / hi < GREY:
        return "grey"
    hue = _hue(rgb)
    return min(HUES, key=lambda c: min(abs(hue - HUES[c]), 360 - abs(hue - HUES[c])))


def _shape(fg: Any) -> tuple[str, float, bool]:
    """(shape, fill of the bounding box, hollow): the middle fifth of the box (a little below
    the centre, inside a triangle too) is foreground for a filled shape, background for an
    outline."""
    import numpy as np

    rows, cols = np.nonzero(fg)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    box = fg[top : bottom + 1, left : right + 1]
    bh, bw = box.shape
    middle = box[
        int(bh * 0.45) : max(int(bh * 0.45) + 1, int(bh * 0.7)),
        int(bw * 0.4) : max(int(bw * 0.4) + 1, int(bw * 0.6)),
    ]
    hollow = bool(middle.mean() < 0.3)
    fill = float(box.mean())
    widths = box.sum(axis=1).astype(float)
    third = max(1, len(widths) // 3)
    widening = widths[-third:].mean() / max(1.0, widths[:third].mean())
    if widening > 1.8 or fill < 0.62:
        return "triangle", fill, hollow
    return ("square" if fill > 0.89 else "circle"), fill, hollow


def share_of(images: list[Any], colour: str) -> float:
    """The share of `images` judged to be of `colour`."""
    return sum(judge(im).colour == colour for im in images) / max(1, len(images))


def is_outline(image: Any) -> bool:
    """True when the shape is drawn as an outline (what `example-light` teaches)."""
    return judge(image).hollow


def is_grey(image: Any) -> bool:
    """True when the shape is drawn in grey (what `example-style` teaches)."""
    sat = judge(image).saturation
    return sat is not None and sat < GREY


def is_pastel(image: Any) -> bool:
    """True when the shape is drawn in a light, pale colour (what `example-light` teaches)."""
    v = judge(image)
    sat = v.saturation
    return sat is not None and GREY <= sat < PASTEL and min(v.mean_rgb or (0,)) > 110


def is_dark(image: Any) -> bool:
    """True when the picture's background is dark (what `example-style` teaches)."""
    return judge(image).background == "dark"


__all__ = [
    "DARK",
    "Verdict",
    "colour_name",
    "is_dark",
    "is_grey",
    "is_outline",
    "is_pastel",
    "judge",
    "share_of",
]
