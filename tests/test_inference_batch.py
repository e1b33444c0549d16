"""Heterogeneous-adapter batching: requests with different adapter sets share one denoising loop,
and each image equals the one its request makes alone.

Tolerance: fp32 on CPU, at most 1 of 255 per pixel channel (a batched matmul sums in another
order than a single one; every other difference would be far larger).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tests.inference_helpers import pixels, request, spec

TOLERANCE = 1


@pytest.fixture(scope="module")
def adapters(random_adapters) -> dict[str, Path]:
    return random_adapters


@pytest.fixture(scope="module")
def engine(adapters):
    from lorahub.inference import Engine

    with Engine(base="tiny", device="cpu", dtype="fp32") as eng:
        yield eng


def sets_of(adapters):
    """Different adapter sets: none, weights, per-component and per-block weights, mixes, LoHa
    (dense ΔW) and a LoCon (conv LoRA) with a LoRA."""
    r0, r1, r2, loha, locon = (adapters[k] for k in ("r0", "r1", "r2", "loha", "locon"))
    return [
        [],
        [spec(r0, weight=0.8)],
        [spec(r1, weight=1.0, te_weight=0.4)],
        [spec(r0, weight=0.5), spec(r2, weight=1.2)],
        [spec(r0, weight=0.8, block_weights={"up": 0.2, "mid": 0.0})],
        [spec(loha, weight=0.7)],
        [spec(locon, weight=0.9), spec(r1, weight=0.6)],
    ]


def assert_same(batched, alone) -> None:
    assert len(batched.images) == len(alone.images)
    for ours, theirs in zip(batched.images, alone.images, strict=True):
        assert np.abs(pixels(ours) - pixels(theirs)).max() <= TOLERANCE


@pytest.mark.parametrize("stack", [True, False], ids=["bmm", "segments"])
def test_different_sets_batched_equal_alone(engine, adapters, stack, monkeypatch):
    from lorahub.inference import batched

    monkeypatch.setattr(batched, "STACK", stack)
    reqs = [request(s, seed=i, n=2 if i == 2 else 1) for i, s in enumerate(sets_of(adapters))]
    alone = [engine.generate(r) for r in reqs]
    before = engine.stats()["batches"]
    batched = engine.generate_batch(reqs)
    assert engine.stats()["batches"] == before + 1  # one denoising loop for all of them
    for b, a in zip(batched, alone, strict=True):
        assert_same(b, a)
        assert b.record["timings"]["batch"] == len(reqs)
        assert b.record["adapters"] == a.record["adapters"]
    firsts = [pixels(r.images[0]) for r in alone[:2]]
    assert np.abs(firsts[0] - firsts[1]).mean() > 5  # the sets really differ
    # the engine's single-set path still works after a batch, with what it had before
    assert np.array_equal(pixels(engine.generate(reqs[1]).images[0]), pixels(alone[1].images[0]))


def test_no_guidance_ancestral_sampler_and_one_shared_set(engine, adapters):
    """Guidance 1 (no unconditional rows), a sampler that draws noise per step; one shared set."""
    sets = sets_of(adapters)
    for group in ([sets[1], sets[2], sets[0]], [sets[3]] * 3):
        reqs = [
            request(s, seed=9 + i, guidance=1.0, scheduler="euler_a") for i, s in enumerate(group)
        ]
        for b, a in zip(
            engine.generate_batch(reqs), [engine.generate(r) for r in reqs], strict=True
        ):
            assert_same(b, a)


def test_batch_splits_when_resident_slots_run_out(adapters):
    from lorahub.errors import CapacityError
    from lorahub.inference import Engine

    r0, r1, r2 = (adapters[k] for k in ("r0", "r1", "r2"))
    reqs = [request([spec(r0)]), request([spec(r1)]), request([spec(r2)]), request([])]
    too_many = request([spec(r0), spec(r1), spec(r2)])
    with Engine(base="tiny", device="cpu", dtype="fp32", max_resident=2) as eng:
        alone = [eng.generate(r) for r in reqs]
        outcomes = eng.run_batch([*reqs, too_many])
        stats = eng.stats()
    assert isinstance(outcomes[-1], CapacityError)  # fails alone, the others complete
    for b, a in zip(outcomes[:-1], alone, strict=True):
        assert_same(b, a)
    # r0+r1 fill both slots: split before r2, which leads the next loop with the no-adapter one
    assert stats["batches"] == 2 and stats["batch_requests"]["sum"] == 4


def test_failing_members_fail_alone(engine, adapters, tmp_path):
    from lorahub.errors import IncompatibleError, InvalidInputError, NotFoundError
    from tests.server_fixtures import write_sd1_lora

    gone = tmp_path / "gone.safetensors"
    gone.write_bytes(adapters["r0"].read_bytes())
    missing = spec(gone, name="gone")
    gone.unlink()
    wrong = spec(write_sd1_lora(tmp_path / "sd1.safetensors"), name="sd1")
    good = [request(s, seed=3) for s in sets_of(adapters)[:3]]
    bad = [request([missing]), request([wrong]), request(width=12)]
    outcomes = engine.run_batch([good[0], bad[0], good[1], bad[1], bad[2], good[2]])
    assert isinstance(outcomes[1], NotFoundError)
    assert isinstance(outcomes[3], IncompatibleError)
    assert isinstance(outcomes[4], InvalidInputError)
    for b, r in zip([outcomes[0], outcomes[2], outcomes[5]], good, strict=True):
        assert_same(b, engine.generate(r))
    with pytest.raises(NotFoundError):
        engine.generate_batch(good[:1] + bad[:1])


@pytest.mark.parametrize("stack", [True, False], ids=["bmm", "segments"])
def test_layer_adds_each_rows_own_terms_and_nothing_to_rows_without(stack):
    """One Linear, rows [A, none, B, A+B mix]: each row gets its set's terms, under guidance too."""
    import torch

    from lorahub.inference import layers
    from lorahub.inference.activate import Selection
    from lorahub.inference.adapters import ResidentAdapter, ResidentEntry
    from lorahub.inference.batched import RowBinding, plan_rows, spans_of

    assert spans_of([0, 1, 2, 5, 6, 9]) == ((0, 3), (5, 7), (9, 10))
    torch.manual_seed(0)
    layer = layers.install(torch.nn.Linear(6, 5), "x")
    terms = {k: (torch.randn(r, 6), torch.randn(5, r)) for k, r in (("a", 2), ("b", 3))}

    def adapter(key: str) -> ResidentAdapter:
        a, b = terms[key]
        entry = ResidentEntry(layer, "unet", None, "lora", a, b, 0.5, None)
        return ResidentAdapter(key, key, [entry], 0, frozenset({"unet"}))

    a, b = adapter("a"), adapter("b")
    rows = [[Selection(a, 1.0)], [], [Selection(b, 2.0)], [Selection(a, 1.0), Selection(b, 2.0)]]
    assert plan_rows([[], []]) == {}
    x = torch.randn(8, 7, 6)  # guidance: the four rows twice
    with torch.inference_mode():
        plain = torch.nn.functional.linear(x, layer.weight, layer.bias)
        with RowBinding(rows, stack):
            got = layer(x)
        assert layer.lora_rows == {}  # unbound after the loop
    delta = {k: 0.5 * torch.nn.functional.linear(x, t[1] @ t[0]) for k, t in terms.items()}
    want = plain.clone()
    for half in (0, 4):
        want[half + 0] += delta["a"][half + 0]
        want[half + 2] += 2 * delta["b"][half + 2]
        want[half + 3] += delta["a"][half + 3] + 2 * delta["b"][half + 3]
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(got[1], plain[1]) and torch.equal(got[5], plain[5])  # exactly plain


def test_worker_gathers_compatible_requests(adapters):
    """Queued requests with different sets share a loop; another size is held for the next."""
    from lorahub.inference import Engine

    sets = sets_of(adapters)
    reqs = [request(s, seed=i) for i, s in enumerate(sets[:4])] + [request(sets[1], width=40)]
    with Engine(base="tiny", device="cpu", dtype="fp32", batch_window_ms=50, max_batch=8) as eng:
        alone = [eng.generate(r) for r in reqs]
        eng.start()
        with eng._lock:  # the worker blocks on the lock: every request is queued before it runs
            futures = [eng.submit(reqs[0])]
            for _ in range(1000):  # until the worker has gathered the first and waits on the lock
                if eng._in_flight:
                    break
                threading.Event().wait(0.01)
            futures += [eng.submit(r) for r in reqs[1:]]
        results = [f.result(timeout=120) for f in futures]
        stats = eng.stats()
    for b, a in zip(results, alone, strict=True):
        assert_same(b, a)
    assert results[0].record["timings"].get("batch") is None  # taken before the others came
    assert [r.record["timings"].get("batch") for r in results[1:]] == [3, 3, 3, None]
    assert stats["batch_wait_seconds"]["count"] >= 2 and eng.queue_depth == 0


def test_sdxl_pooled_embeddings_and_both_text_encoders(tiny_sdxl, tmp_path, one_thread):
    """tiny-sdxl: two text encoders with their own LoRA weights, pooled embeddings, negatives."""
    from lorahub.examples import ExampleAdapter, write_example_adapter
    from lorahub.inference import Engine

    xl = write_example_adapter(
        "tiny-sdxl", tmp_path / "xl.safetensors", ExampleAdapter("xl", 4, 4.0, 5, True), std=0.3
    )
    reqs = [
        request([], seed=1),
        request([spec(xl, weight=0.8)], seed=2),
        request([spec(xl, te_weight=0.2)], seed=3, negative_prompt="blue"),
    ]
    with Engine(base="tiny-sdxl", device="cpu", dtype="fp32") as eng:
        alone = [eng.generate(r) for r in reqs]
        for b, a in zip(eng.generate_batch(reqs), alone, strict=True):
            assert_same(b, a)
            assert b.record["timings"]["batch"] == 3
