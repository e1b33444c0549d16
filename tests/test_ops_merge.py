"""Merges on the tiny base: cat reproduces the stacked mix, svd errors are exact, peft agrees."""

from __future__ import annotations

import pytest
import torch

from lorahub.formats import open_adapter
from lorahub.ops.inputs import spec_from_file
from lorahub.ops.lowrank import factored_svd, stack_factors
from lorahub.ops.merge import MergeOptions, merge_adapters

WEIGHTS = (0.7, 0.4)


@pytest.fixture(scope="module")
def pipe(tiny_sd1):
    from lorahub.models import load_pipeline

    return load_pipeline("tiny", device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def specs(example_adapters):
    return [
        spec_from_file(example_adapters["example-style"], WEIGHTS[0]),
        spec_from_file(example_adapters["example-light"], WEIGHTS[1]),
    ]


@pytest.fixture(scope="module")
def merged(specs, tmp_path_factory):
    """cat, full-rank svd and rank-4 svd merges of the two example adapters, with their reports."""
    out = tmp_path_factory.mktemp("merged")
    runs = {
        "cat": MergeOptions("cat"),
        "svd12": MergeOptions("svd", rank=12),
        "svd4": MergeOptions("svd", rank=4),
    }
    return {
        k: (out / f"{k}.safetensors", merge_adapters(specs, out / f"{k}.safetensors", o))
        for k, o in runs.items()
    }


def unet_out(pipe, files: list, weights: list[float]) -> torch.Tensor:
    """The UNet's output with adapters loaded by plain diffusers and weighted by set_adapters."""
    names = [f"a{i}" for i in range(len(files))]
    for f, n in zip(files, names, strict=True):
        pipe.load_lora_weights(str(f), adapter_name=n)
    if names:
        pipe.set_adapters(names, adapter_weights=weights)
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=gen)
    context = torch.randn(1, 5, 32, generator=gen)
    with torch.no_grad():
        out = pipe.unet(sample, 10, encoder_hidden_states=context).sample
    if names:
        pipe.delete_adapters(names)
    return out


def dense(mw) -> torch.Tensor:
    return mw.delta_weight().double().reshape(mw.delta_weight().shape[0], -1)


def test_cat_reproduces_the_stacked_mix(pipe, example_adapters, merged):
    files = [example_adapters["example-style"], example_adapters["example-light"]]
    stacked = unet_out(pipe, files, list(WEIGHTS))
    baked = unet_out(pipe, [merged["cat"][0]], [1.0])
    plain = unet_out(pipe, [], [])
    assert (stacked - plain).abs().max() > 1e-3  # the adapters do something
    torch.testing.assert_close(baked, stacked, atol=1e-5, rtol=1e-5)
    report = merged["cat"][1]
    assert report.overall_error < 1e-6
    assert report.rank_out == (8, 12)  # TE-only modules rank 8, UNet modules 4 + 8


def test_svd_full_rank_exact(merged):
    assert merged["svd12"][1].overall_error < 1e-6


def test_svd_low_rank_error_is_the_true_error(specs, merged):
    path, report = merged["svd4"]
    rows = {m.name: m for m in report.modules}
    ins = [open_adapter(s.path) for s in specs]
    out = open_adapter(path)
    errs, tgts = [], []
    for name in out.module_names():
        target = sum(
            w * dense(r.module(name))
            for w, r in zip(WEIGHTS, ins, strict=True)
            if name in r.module_names()
        )
        diff = float((dense(out.module(name)) - target).norm())
        errs.append(diff)
        tgts.append(float(target.norm()))
        assert rows[name].rel_error == pytest.approx(diff / tgts[-1], rel=1e-4, abs=1e-7)
    assert out.module(name).rank == 4
    overall = (sum(e * e for e in errs) / sum(t * t for t in tgts)) ** 0.5
    assert report.overall_error == pytest.approx(overall, rel=1e-4)
    assert 0.05 < report.overall_error < 1


def test_factored_svd_matches_dense_svd():
    gen = torch.Generator().manual_seed(1)
    terms = [(0.7, torch.randn(40, 6, generator=gen), torch.randn(6, 50, generator=gen)),
             (-1.3, torch.randn(40, 5, generator=gen), torch.randn(5, 50, generator=gen))]  # fmt: skip
    b, a = stack_factors(terms)
    full = b @ a
    s_dense = torch.linalg.svdvals(full)
    for r in (1, 3, 7, 11):
        f = factored_svd(b, a, rank=r)
        torch.testing.assert_close(f.singular_values[:11], s_dense[:11], atol=1e-9, rtol=1e-9)
        true = float((f.up @ f.down - full).norm() / full.norm())
        assert f.rel_error == pytest.approx(true, rel=1e-9, abs=1e-12)
        assert f.up.shape == (40, r) and f.down.shape == (r, 50)


def _peft_unet(pipe, specs):
    """A peft model over a copy of the tiny UNet holding the two example adapters (UNet part)."""
    import copy

    from peft import LoraConfig, get_peft_model

    unet = copy.deepcopy(pipe.unet)
    model = None
    for i, s in enumerate(specs):
        reader = open_adapter(s.path)
        mods = {n.removeprefix("unet."): m for n, m in reader.modules() if n.startswith("unet.")}
        first = next(iter(mods.values()))
        cfg = LoraConfig(
            r=first.rank,
            lora_alpha=first.alpha,
            target_modules=sorted(mods),  # exactly the modules the file has
        )
        if model is None:
            model = get_peft_model(unet, cfg, adapter_name=f"a{i}")
        else:
            model.add_adapter(f"a{i}", cfg)
        with torch.no_grad():
            for path, m in mods.items():
                layer = model.base_model.model.get_submodule(path)
                layer.lora_A[f"a{i}"].weight.copy_(m.down)
                layer.lora_B[f"a{i}"].weight.copy_(m.up)
    return model, sorted(mods)


@pytest.mark.parametrize(("ours", "theirs", "rank"), [("cat", "cat", None), ("svd4", "svd", 4)])
def test_agrees_with_peft_add_weighted_adapter(pipe, specs, merged, ours, theirs, rank):
    model, paths = _peft_unet(pipe, specs)
    model.add_weighted_adapter(
        ["a0", "a1"], list(WEIGHTS), "m", combination_type=theirs, svd_rank=rank
    )
    out = open_adapter(merged[ours][0])
    for path in paths:
        layer = model.base_model.model.get_submodule(path)
        theirs_dw = layer.get_delta_weight("m").double()
        ours_dw = dense(out.module(f"unet.{path}")).reshape(theirs_dw.shape)  # 1x1 convs
        torch.testing.assert_close(ours_dw, theirs_dw, atol=1e-6, rtol=1e-4)


def test_ties_and_dare_report_error_against_the_weighted_sum(specs, tmp_path):
    for method in ("ties", "dare"):
        r1 = merge_adapters(
            specs, tmp_path / f"{method}.safetensors", MergeOptions(method, rank=12, seed=3)
        )
        r2 = merge_adapters(
            specs, tmp_path / f"{method}2.safetensors", MergeOptions(method, rank=12, seed=3)
        )
        assert 0.05 < r1.overall_error < 2
        assert r1.overall_error == pytest.approx(r2.overall_error)  # seeded: reproducible
        assert r1.density == (0.2 if method == "ties" else 0.5)
    full = merge_adapters(
        specs, tmp_path / "d1.safetensors", MergeOptions("dare", rank=12, density=1.0)
    )
    assert full.overall_error < 1e-5  # nothing dropped, full rank: the weighted sum itself


def test_block_and_text_weights_scale_their_modules(example_adapters, tmp_path):
    from dataclasses import replace

    base = spec_from_file(example_adapters["example-light"], 1.0)
    spec = replace(base, te_weight=0.0, block_weights={"down": 2.0, "mid": 0.0})
    merge_adapters([spec], tmp_path / "w.safetensors", MergeOptions("cat"))
    src, out = open_adapter(base.path), open_adapter(tmp_path / "w.safetensors")
    for name in src.module_names():
        factor = (
            0.0
            if name.startswith(("text_encoder", "unet.mid_block"))
            else 2.0
            if ".down_blocks." in name
            else 1.0
        )
        torch.testing.assert_close(
            dense(out.module(name)), factor * dense(src.module(name)), atol=1e-7, rtol=1e-5
        )
