"""The engine on the tiny base: parity with diffusers, isolation, caches, files changing on disk."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from tests.inference_helpers import diffusers_image, pixels, request, spec


@pytest.fixture(scope="module")
def engine():
    from lorahub.inference import Engine

    with Engine(base="tiny", device="cpu", dtype="fp32") as eng:
        yield eng


@pytest.fixture(scope="module")
def plain(engine):
    """The no-adapter image of the default request."""
    return pixels(engine.generate(request()).images[0])


def _image(engine, adapters, **kw):
    return pixels(engine.generate(request(adapters, **kw)).images[0])


@pytest.mark.parametrize(
    "case",
    ["style@0.7", "light@1.0", "light@unet=1,te=0.3", "mix"],
)
def test_images_match_plain_diffusers(engine, plain, example_adapters, case):
    style, light = example_adapters["example-style"], example_adapters["example-light"]
    cases = {
        "style@0.7": [(style, {"weight": 0.7}, 0.7)],
        "light@1.0": [(light, {"weight": 1.0}, 1.0)],
        "light@unet=1,te=0.3": [
            (light, {"weight": 1.0, "te_weight": 0.3}, {"unet": 1.0, "text_encoder": 0.3})
        ],
        "mix": [(style, {"weight": 0.7}, 0.7), (light, {"weight": 0.5}, 0.5)],
    }[case]
    ours = _image(engine, [spec(p, **kw) for p, kw, _ in cases])
    theirs = diffusers_image([(p, w) for p, _, w in cases])
    assert np.abs(ours - theirs).max() <= 1
    assert np.abs(ours - plain).mean() > 0.2  # the adapter really changed the image


def test_layer_outputs_match_diffusers_in_float(engine, example_adapters):
    """UNet and text-encoder outputs of an active mix equal diffusers' within float tolerance."""
    import torch

    from lorahub.models import load_pipeline

    style, light = example_adapters["example-style"], example_adapters["example-light"]
    engine.generate(request([spec(style, weight=0.7), spec(light, weight=1.3, te_weight=0.4)]))
    ours = engine.runtime().pipe
    processors = {type(p).__name__ for p in ours.unet.attn_processors.values()}
    assert processors == {"AttnProcessor2_0"}  # SDPA attention, kept with adapters installed
    ref = load_pipeline("tiny", device="cpu", dtype="fp32")
    ref.load_lora_weights(str(style), adapter_name="s")
    ref.load_lora_weights(str(light), adapter_name="l")
    ref.set_adapters(["s", "l"], [0.7, {"unet": 1.3, "text_encoder": 0.4}])
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (1, 8), generator=gen)
    sample, text = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 8, 32, generator=gen)
    with torch.inference_mode():
        te_ours, te_ref = ours.text_encoder(ids)[0], ref.text_encoder(ids)[0]
        u_ours = ours.unet(sample, 10, encoder_hidden_states=text).sample
        u_ref = ref.unet(sample, 10, encoder_hidden_states=text).sample
        u_plain = load_pipeline("tiny", device="cpu", dtype="fp32").unet(sample, 10, text).sample
    torch.testing.assert_close(te_ours, te_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(u_ours, u_ref, rtol=1e-5, atol=1e-5)
    assert (u_ours - u_plain).abs().max() > 1e-3


def test_requests_never_see_each_others_adapters(engine, example_adapters):
    """A, then B, then nothing: each image equals the same request on a fresh engine."""
    from lorahub.inference import Engine

    a = [spec(example_adapters["example-style"], weight=0.9)]
    b = [spec(example_adapters["example-light"], weight=0.8)]
    sequence = [a, b, [], a]
    got = [_image(engine, s) for s in sequence]
    for adapters, image in zip(sequence[:3], got[:3], strict=True):
        with Engine(base="tiny", device="cpu", dtype="fp32") as fresh:
            assert np.array_equal(_image(fresh, adapters), image)
    assert np.array_equal(got[0], got[3])


def test_switching_between_resident_adapters_reloads_nothing(engine, example_adapters):
    a = [spec(example_adapters["example-style"])]
    b = [spec(example_adapters["example-light"])]
    engine.generate(request(a))
    engine.generate(request(b))
    before = engine.stats()
    for adapters in (a, b, a, b):
        engine.generate(request(adapters))
    after = engine.stats()
    assert after["cpu_misses"] == before["cpu_misses"]
    assert after["resident_misses"] == before["resident_misses"]
    assert after["resident_hits"] == before["resident_hits"] + 4
    assert after["swaps"] == before["swaps"] + 4
    assert after["swap_seconds"]["count"] == before["swap_seconds"]["count"] + 4


def test_block_weights(engine, plain, example_adapters):
    style = example_adapters["example-style"]
    zero = _image(engine, [spec(style, block_weights={"down": 0, "mid": 0, "up": 0})])
    assert np.array_equal(zero, plain)
    full = _image(engine, [spec(style)])
    down_off = _image(engine, [spec(style, block_weights={"down": 0.0})])
    assert not np.array_equal(down_off, full) and not np.array_equal(down_off, plain)


def test_file_rewritten_or_truncated_under_the_engine(engine, example_adapters, tmp_path):
    """Live weights are the engine's own copy: changing the file on disk changes nothing."""
    from lorahub.errors import BadFileError

    path = tmp_path / "live.safetensors"
    shutil.copyfile(example_adapters["example-style"], path)
    live = spec(path)
    first = _image(engine, [live])
    other = example_adapters["example-light"].read_bytes()
    with open(path, "r+b") as fh:  # rewrite in place (same inode), then truncate
        fh.write(other[: path.stat().st_size])
        fh.truncate(100)
    assert np.array_equal(_image(engine, [live]), first)
    with pytest.raises(BadFileError):
        engine.generate(request([spec(path, name="live2")]))


def test_eviction_and_capacity(example_adapters):
    from lorahub.errors import CapacityError
    from lorahub.inference import Engine

    a = [spec(example_adapters["example-style"])]
    b = [spec(example_adapters["example-light"])]
    with Engine(base="tiny", device="cpu", dtype="fp32", max_resident=1) as eng:
        first = _image(eng, a)
        _image(eng, b)
        assert np.array_equal(_image(eng, a), first)
        stats = eng.stats()
        assert stats["evictions_resident"] == 2 and stats["cpu_hits"] == 1
        assert stats["resident_adapters"] == 1
        with pytest.raises(CapacityError, match="at most 1"):
            eng.generate(request(a + b))
    with Engine(base="tiny", device="cpu", dtype="fp32", max_resident_bytes=10_000) as eng:
        with pytest.raises(CapacityError, match="adapter example-style needs .* resident limit"):
            eng.generate(request(a))
        assert eng.status()["bases"][0]["resident"] == [] and eng.generate(request()).images


def test_fuse_when_hot_matches_and_unfuses_exactly(engine, plain, example_adapters):
    from lorahub.inference import Engine

    mix = [
        spec(example_adapters["example-style"], weight=0.7),
        spec(example_adapters["example-light"]),
    ]
    unfused = _image(engine, mix)
    with Engine(base="tiny", device="cpu", dtype="fp32", fuse_after=1) as eng:
        fused = _image(eng, mix)
        assert eng.stats()["fuses"] == 1 and eng.status()["bases"][0]["fused"]
        assert np.abs(fused - unfused).max() <= 1
        assert np.array_equal(_image(eng, []), plain)


def test_worker_queue_is_deterministic_under_concurrency(engine, example_adapters):
    sets = [
        [],
        [spec(example_adapters["example-style"], weight=0.6)],
        [spec(example_adapters["example-light"], weight=1.1)],
    ]
    alone = {(i, seed): _image(engine, s, seed=seed) for i, s in enumerate(sets) for seed in (1, 2)}
    engine.start()
    results: dict = {}

    def client(i: int, seed: int) -> None:
        results[(i, seed)] = pixels(engine.submit(request(sets[i], seed=seed)).result().images[0])

    threads = [threading.Thread(target=client, args=key) for key in alone]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[k], alone[k]) for k in alone)
    assert engine.queue_depth == 0


def test_queue_overflow_is_a_capacity_error():
    from lorahub.errors import CapacityError
    from lorahub.inference import Engine

    eng = Engine(base="tiny", device="cpu", dtype="fp32", max_queue=1)
    with eng._lock:  # the worker blocks on the engine lock: requests pile up
        first = eng.submit(request())
        while eng._queue.qsize():
            pass
        second = eng.submit(request())
        with pytest.raises(CapacityError, match="queue is full"):
            eng.submit(request())
    assert first.result().images and second.result().images
    eng.close()


def test_bad_requests(engine, example_adapters):
    from lorahub.errors import IncompatibleError, InvalidInputError, NotFoundError
    from lorahub.types import AdapterSpec

    with pytest.raises(IncompatibleError, match=r"example-style is for sdxl.*tiny-sd1"):
        engine.generate(request([spec(example_adapters["example-style"], base_family="sdxl")]))
    with pytest.raises(InvalidInputError, match="unknown scheduler"):
        engine.generate(request(scheduler="nope"))
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        engine.generate(request(width=30))
    with pytest.raises(NotFoundError):
        engine.generate(request([AdapterSpec("gone", "/nonexistent.safetensors", "k")]))


def test_scheduler_and_clip_skip_do_not_leak(engine, plain):
    res = engine.generate(request(scheduler="euler", clip_skip=1))
    assert res.record["scheduler"] == "EulerDiscreteScheduler" and res.record["clip_skip"] == 1
    assert not np.array_equal(pixels(res.images[0]), plain)
    assert np.array_equal(_image(engine, []), plain)


def test_n_images_use_consecutive_seeds(engine):
    res = engine.generate(request(n=2, seed=3))
    assert res.record["seeds"] == [3, 4] and len(res.images) == 2
    assert np.abs(pixels(res.images[1]) - _image(engine, [], seed=4)).max() <= 1
