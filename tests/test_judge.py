"""The judge of pictures (lorahub/judge.py) on the synthetic world itself: it must be right
about what was drawn before it can grade what a model draws."""

from __future__ import annotations

import random

import pytest

from lorahub.judge import is_dark, is_grey, is_outline, is_pastel, judge, share_of
from lorahub.training.demo import ALL_COLOURS, SHAPES, draw_scene


def test_colour_and_shape_of_every_drawn_scene():
    rng = random.Random(5)
    for _ in range(300):
        shape, colour = rng.choice(SHAPES), rng.choice(list(ALL_COLOURS))
        v = judge(draw_scene(shape, colour, 64, rng))
        assert (v.colour, v.shape, v.background, v.hollow) == (colour, shape, "light", False)


@pytest.mark.parametrize("shape", SHAPES)
def test_dark_backgrounds_and_outlines(shape):
    rng = random.Random(1)
    dark = draw_scene(shape, "red", 64, rng, background="dark")
    outline = draw_scene(shape, "blue", 64, rng, outline=True)
    assert is_dark(dark) and not is_outline(dark) and judge(dark).colour == "red"
    assert is_outline(outline) and not is_dark(outline) and judge(outline).colour == "blue"


def test_an_empty_picture_has_no_colour():
    from PIL import Image

    v = judge(Image.new("RGB", (64, 64), (240, 240, 240)))
    assert v.colour is None and v.shape is None and v.foreground == 0.0
    assert share_of([Image.new("RGB", (64, 64), (240, 240, 240))], "purple") == 0.0


@pytest.mark.parametrize("tint", [None, "pastel", "grey"])
def test_saturation_tells_vivid_pastel_and_grey(tint):
    rng = random.Random(2)
    for shape in SHAPES:
        for colour in ("red", "green", "blue", "yellow", "purple"):
            image = draw_scene(shape, colour, 64, rng, tint=tint)
            assert (is_pastel(image), is_grey(image)) == (tint == "pastel", tint == "grey")


def test_colours_are_named_by_hue_so_washed_out_colours_keep_their_name():
    """A half-washed green is still green and a grey is grey: naming by RGB distance called
    both purple (the world colour nearest to grey), which counted style adapters as purple."""
    from lorahub.judge import colour_name

    assert colour_name((100, 140, 110)) == "green"
    assert colour_name((150, 110, 110)) == "red"
    assert colour_name((120, 120, 126)) == "grey"
    assert colour_name((170, 130, 200)) == "purple"
    rng = random.Random(3)
    for colour in ALL_COLOURS:
        assert judge(draw_scene("square", colour, 64, rng, tint="grey")).colour == "grey"
