"""LyCORIS (LoKr, LoHa) to plain LoRA: `export --rank/--energy` on the real LoKr fixture, the
reported error equal to the measured one, and the result loading in plain diffusers/peft on
the SD 1.5 architecture."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from lorahub.cli import main as cli
from lorahub.formats import ModuleWeights, inspect_file, open_adapter
from lorahub.ops import lowrank as LR
from lorahub.ops.resize import resize_module

LOKR = "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors"


def _export(*args):
    result = CliRunner().invoke(cli, ["export", *args, "--json"], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def converted(fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lokr") / "lora.safetensors"
    result = _export(
        str(fixtures_dir / LOKR), "--format", "diffusers", "--energy", "0.99", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_lokr_exports_as_a_lora_with_the_true_error(converted, fixtures_dir):
    out, report = converted
    info = inspect_file(out)
    assert info.network_type in ("lora", "locon") and info.base_family == "sd1"
    assert info.module_count == 350 == len(report["modules"])
    assert report["operation"] == "export"
    assert 0 < report["max_rel_error"] <= 0.1 + 1e-6  # 99% of ‖ΔW‖² kept per module
    rows = {m["name"]: m for m in report["modules"]}
    with open_adapter(fixtures_dir / LOKR) as src, open_adapter(out) as dst:
        for name in sorted(rows)[::35]:
            want = LR.to_2d(src.module(name).delta_weight()).double()
            got = LR.to_2d(dst.module(name).delta_weight()).double()
            measured = float((got - want).norm() / want.norm())
            # the file is float16 like its source: the rounding adds a little to the exact figure
            assert measured == pytest.approx(rows[name]["rel_error"], abs=2e-3), name


def test_the_lora_loads_in_plain_diffusers_on_the_sd15_shape(converted):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from lorahub.formats.modules import find_layer
    from lorahub.fullsize import clip_l_text_encoder, sd15_unet

    out, _ = converted
    state = load_file(str(out))
    unet = sd15_unet(empty=True)
    unet.load_lora_adapter(state, prefix="unet", adapter_name="x")
    with open_adapter(out) as reader:
        for name in ("unet.down_blocks.0.resnets.0.conv1", "unet.mid_block.attentions.0.proj_in"):
            layer = unet.get_submodule(name.removeprefix("unet."))
            peft_delta = layer.get_delta_weight("x").float()
            ours = reader.module(name).delta_weight().reshape(peft_delta.shape)
            assert torch.allclose(peft_delta, ours, atol=1e-4), name
        te = clip_l_text_encoder(empty=True)
        StableDiffusionPipeline.load_lora_into_text_encoder(
            state, None, te, prefix="text_encoder", adapter_name="x"
        )
        name = "text_encoder.text_model.encoder.layers.3.mlp.fc1"
        layer = find_layer(SimpleNamespace(text_encoder=te), name)
        ours = reader.module(name).delta_weight()
        assert torch.allclose(layer.get_delta_weight("x").float(), ours, atol=1e-4)


def test_lokr_export_needs_a_rank_and_lora_export_refuses_one(
    fixtures_dir, tmp_path, example_adapters
):
    r = CliRunner().invoke(
        cli,
        [
            "export",
            str(fixtures_dir / LOKR),
            "--format",
            "kohya",
            "-o",
            str(tmp_path / "a.safetensors"),
        ],
    )
    assert r.exit_code != 0 and "--rank R or --energy E" in r.output
    assert not (tmp_path / "a.safetensors").exists()
    r = CliRunner().invoke(
        cli,
        ["export", str(example_adapters["example-light"]), "--format", "kohya", "--rank", "2",
         "-o", str(tmp_path / "b.safetensors")],
    )  # fmt: skip
    assert r.exit_code != 0 and "lorahub resize" in r.output


def _lokr(gen, w2_low_rank, conv=False):
    w1 = torch.randn(4, 2, generator=gen)
    if w2_low_rank:
        b = torch.randn(3, 5 * (9 if conv else 1), generator=gen)
        return ModuleWeights(
            kind="lokr", lokr_w1=w1, lokr_w2_a=torch.randn(6, 3, generator=gen), lokr_w2_b=b,
            alpha=1.5, shape=(24, 10, 3, 3) if conv else (24, 10),
        )  # fmt: skip
    w2 = torch.randn(6, 5, 3, 3, generator=gen) if conv else torch.randn(6, 5, generator=gen)
    return ModuleWeights(kind="lokr", lokr_w1=w1, lokr_w2=w2, shape=tuple([24, 10, *w2.shape[2:]]))


@pytest.mark.parametrize(
    "make",
    [
        lambda g: _lokr(g, True),
        lambda g: _lokr(g, False),
        lambda g: _lokr(g, True, conv=True),
        lambda g: _lokr(g, False, conv=True),
        lambda g: ModuleWeights(
            kind="loha",
            hada_w1_a=torch.randn(12, 3, generator=g),
            hada_w1_b=torch.randn(3, 7, generator=g),
            hada_w2_a=torch.randn(12, 2, generator=g),
            hada_w2_b=torch.randn(2, 7, generator=g),
            alpha=2.0,
        ),  # fmt: skip
    ],
    ids=["lokr-w2-factored", "lokr-w2-full", "lokr-conv-factored", "lokr-conv-full", "loha"],
)
def test_structured_svd_is_exact(make):
    """Full rank reproduces ΔW; every truncation reports exactly the error it makes."""
    mw = make(torch.Generator().manual_seed(0))
    want = LR.to_2d(mw.delta_weight()).double()
    full, _ = resize_module("m", mw, None, None)
    assert torch.allclose(LR.to_2d(full.delta_weight()).double(), want, atol=1e-4)
    for rank in (1, 3):
        out, row = resize_module("m", mw, rank, None)
        assert out.rank == rank
        measured = float((LR.to_2d(out.delta_weight()).double() - want).norm() / want.norm())
        assert measured == pytest.approx(row.rel_error, abs=1e-5)
        assert tuple(out.delta_weight().shape) == tuple(mw.delta_weight().shape)
