"""The work bound of one request: images x steps x pixels, so one valid request cannot hold a server.

work = n x steps x pixels x max(1, pixels / 1024²): linear up to one megapixel, then quadratic,
as self-attention over the latent grows with the square of the pixel count (a 2048² image costs
16x a 1024² one per step, not 4x). Defaults (`lorahub serve --max-work` changes them):
- CUDA: four 1024² images at 50 steps (209,715,200), e.g. eight 512² images at 100 steps;
- CPU: one 512² image at 50 steps (13,107,200).
Unset width/height count at the base family's native size.
"""

from __future__ import annotations

from typing import Any

from lorahub import families
from lorahub.errors import InvalidInputError

MEGAPIXEL = 1024 * 1024
GPU_MAX_WORK = 4 * 50 * MEGAPIXEL
CPU_MAX_WORK = 50 * 512 * 512


def default_max_work(device: Any) -> int:
    """The bound for an engine on `device` (an accelerator allows more than a CPU)."""
    return CPU_MAX_WORK if str(device or "cpu").startswith("cpu") else GPU_MAX_WORK


def request_work(gen: Any, family: str | None) -> int:
    """The work of a GenerationRequest (unset sides at the family's native size, else 1024)."""
    side = families.native_size(family, 1024)
    pixels = (gen.width or side) * (gen.height or side)
    return int(gen.n * gen.steps * pixels * max(1.0, pixels / MEGAPIXEL))


class WorkLimitError(InvalidInputError):
    """A request over the server's work bound."""

    code = "too_much_work"


def check_work(gen: Any, family: str | None, max_work: int) -> None:
    """InvalidInputError (422) when the request is over the server's bound."""
    work = request_work(gen, family)
    if max_work and work > max_work:
        raise WorkLimitError(
            f"request too large: n x steps x pixels (quadratic past 1 MP) is {work:,}, over "
            f"this server's limit of {max_work:,} (lorahub serve --max-work); use fewer "
            "images, steps or pixels"
        )
