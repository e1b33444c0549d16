"""DoRA through the ops: fuse equals diffusers/peft's merged weights; resize keeps the
magnitude; merge refuses with the reason."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from lorahub.cli import main
from lorahub.formats import ModuleWeights, open_adapter, write_adapter
from tests.test_formats_roundtrip import _layers

UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def dora_file(tiny_sd1, tmp_path_factory):
    """A PEFT-convention DoRA adapter (magnitude per output row) on the tiny UNet's attention."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1 / "unet")
    gen = torch.Generator().manual_seed(0)
    modules = []
    for name, layer in _layers(unet, "unet", ("to_q", "to_v")):
        w = layer.weight.detach()
        down = torch.randn(4, w.shape[1], generator=gen) * 0.1
        up = torch.randn(w.shape[0], 4, generator=gen) * 0.1
        magnitude = w.norm(dim=1) * (1 + 0.2 * torch.rand(w.shape[0], generator=gen))
        modules.append((name, ModuleWeights(down=down, up=up, alpha=4.0, dora_scale=magnitude)))
    return write_adapter(modules, tmp_path_factory.mktemp("dora") / "dora.safetensors")


def _cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_fuse_of_dora_equals_peft_merge(tiny_sd1, dora_file, tmp_path, weight):
    from diffusers import StableDiffusionPipeline

    _cli("fuse", "--base", "tiny", f"{dora_file}:{weight}", "-o", tmp_path / "fused")
    ours = load_file(str(tmp_path / "fused" / UNET))
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    pipe.load_lora_weights(str(dora_file))
    pipe.fuse_lora(lora_scale=weight)
    pipe.unload_lora_weights()
    ref = pipe.unet.state_dict()
    base = load_file(str(tiny_sd1 / UNET))
    changed = [k for k in base if not torch.equal(base[k], ours[k])]
    assert changed and all(k.endswith(("to_q.weight", "to_v.weight")) for k in changed)
    for key in changed:
        torch.testing.assert_close(ours[key], ref[key], atol=2e-6, rtol=1e-5)


def test_resize_keeps_the_dora_magnitude(dora_file, tmp_path):
    import json

    out = tmp_path / "small.safetensors"
    report = json.loads(_cli("resize", dora_file, "--rank", "2", "-o", out, "--json").output)
    assert any("DoRA" in w for w in report["warnings"]) and report["max_rel_error"] > 0
    with open_adapter(dora_file) as src, open_adapter(out) as dst:
        for name in src.module_names():
            a, b = src.module(name), dst.module(name)
            assert b.rank == 2 and torch.equal(a.dora_scale, b.dora_scale)


def test_merge_of_dora_refuses_with_the_reason(dora_file, tmp_path):
    result = _cli("merge", dora_file, "--method", "svd", "-o", tmp_path / "m.safetensors", ok=False)
    assert "DoRA" in result.output and "base weights" in result.output
    assert not (tmp_path / "m.safetensors").exists()
    result = _cli(
        "export", dora_file, "--format", "kohya", "-o", tmp_path / "k.safetensors", ok=False
    )
    assert "DoRA" in result.output and "Traceback" not in result.output
