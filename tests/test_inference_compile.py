"""Compile-safe hot-swap: slots planned from the adapters, swaps without recompiling (aot_eager)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.inference_helpers import pixels, request, spec


@pytest.fixture(scope="module")
def unet_adapters(example_adapters, tmp_path_factory):
    """Two UNet-only adapters of different ranks (4 and 8)."""
    from lorahub.examples import ExampleAdapter, write_example_adapter

    other = tmp_path_factory.mktemp("compile") / "other.safetensors"
    write_example_adapter("tiny", other, ExampleAdapter("other", 8, 8.0, 5, False))
    return [spec(example_adapters["example-style"]), spec(other)]


def test_compiled_swaps_do_not_recompile(unet_adapters, example_adapters):
    import torch._dynamo
    from torch._dynamo.utils import counters

    from lorahub.errors import CapacityError, UnsupportedError
    from lorahub.inference import Engine

    style, other = unet_adapters
    sets = [[style], [other], [], [spec(example_adapters["example-style"], weight=0.4), other]]
    with Engine(base="tiny", device="cpu", dtype="fp32") as eager:
        expected = [pixels(eager.generate(request(s)).images[0]) for s in sets]
    torch._dynamo.reset()
    with Engine(
        base="tiny",
        device="cpu",
        dtype="fp32",
        compile=True,
        compile_backend="aot_eager",
        slot_adapters=tuple(unet_adapters),
        slot_rank=12,
    ) as eng:
        first = pixels(eng.generate(request(sets[0])).images[0])
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 1  # the UNet really is compiled
        with torch._dynamo.config.patch(error_on_recompile=True):
            got = [first] + [pixels(eng.generate(request(s)).images[0]) for s in sets[1:]]
        assert counters["stats"]["unique_graphs"] == graphs
        for ours, ref in zip(got, expected, strict=True):
            assert np.abs(ours - ref).max() <= 1
        assert eng.stats()["swaps"] == 4
        with pytest.raises(UnsupportedError, match="text-encoder"):
            eng.generate(request([spec(example_adapters["example-light"])]))
        with pytest.raises(UnsupportedError, match="without --compile"):
            eng.generate(
                request([spec(example_adapters["example-style"], name="x", network_type="loha")])
            )
        big = spec(example_adapters["example-style"], name="big-mix")
        with pytest.raises(CapacityError, match="slot rank"):
            eng.generate(request([big, other, spec(Path(other.path), name="o2")]))
