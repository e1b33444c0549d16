"""`lorahub extract`: a LoRA from a fine-tune and its base, checked against the tuned model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from lorahub.cli import main
from lorahub.formats import inspect_file, open_adapter
from lorahub.ops import lowrank as LR
from lorahub.ops.extract import ExtractOptions, extract_lora
from lorahub.registry import Registry
from tests.test_formats_roundtrip import _unet_out

FROZEN = "conv_in"  # not trained: must be skipped as unchanged


def _fine_tune(unet, steps=3, seed=0):
    """A few fine-tuning steps on random data of every Linear/Conv weight but FROZEN's (biases
    and norms stay: no LoRA can carry them, and the extraction says so)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in unet.named_parameters():
        p.requires_grad_(name.endswith(".weight") and p.dim() in (2, 4))
    getattr(unet, FROZEN).requires_grad_(False)
    opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-3)
    cross = unet.config.cross_attention_dim
    for _ in range(steps):
        x = torch.randn(2, 4, 8, 8, generator=gen)
        ctx = torch.randn(2, 7, cross, generator=gen)
        loss = torch.nn.functional.mse_loss(unet(x, 10, encoder_hidden_states=ctx).sample, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return unet.eval()


@pytest.fixture(scope="module")
def tuned(tiny_sd1, tmp_path_factory):
    from diffusers import UNet2DConditionModel

    folder = tmp_path_factory.mktemp("tuned") / "tuned-sd1"
    shutil.copytree(tiny_sd1, folder)
    unet = _fine_tune(UNet2DConditionModel.from_pretrained(tiny_sd1 / "unet"))
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet")
    return folder


def _cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_full_rank_extraction_reproduces_the_tuned_model(tiny_sd1, tuned, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "full.safetensors"
    result = _cli(
        "extract", "--base", "tiny", "--tuned", tuned, "--energy", "1", "-o", out, "--json"
    )
    report = json.loads(result.output)
    assert report["operation"] == "extract" and report["max_rel_error"] < 1e-5
    info = inspect_file(out)
    assert info.base_family == "tiny-sd1" and info.network_type == "locon"
    assert info.components == ["unet"]  # the text encoder did not change
    names = set(open_adapter(out).module_names())
    assert f"unet.{FROZEN}" not in names and "unet.down_blocks.0.resnets.0.conv1" in names
    assert any("unchanged" in w for w in report["warnings"])
    assert not any("cannot carry" in w for w in report["warnings"])

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    pipe.load_lora_weights(str(out))
    tuned_pipe = StableDiffusionPipeline.from_pretrained(tuned)
    base_pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    got, want = _unet_out(pipe.unet, 32), _unet_out(tuned_pipe.unet, 32)
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())
    assert not torch.allclose(_unet_out(base_pipe.unet, 32), want, atol=1e-3)


def test_low_rank_extraction_reports_the_true_error(tiny_sd1, tuned, tmp_path):
    report = extract_lora(tiny_sd1, tuned, tmp_path / "r2.safetensors", ExtractOptions(rank=2))
    base = load_file(str(tiny_sd1 / "unet" / "diffusion_pytorch_model.safetensors"))
    new = load_file(str(tuned / "unet" / "diffusion_pytorch_model.safetensors"))
    rows = {m.name: m for m in report.modules}
    assert max(m.rank_out for m in report.modules) == 2 and report.overall_error > 0.01
    with open_adapter(tmp_path / "r2.safetensors") as reader:
        for name in sorted(rows)[::7]:
            key = name.removeprefix("unet.") + ".weight"
            true = LR.to_2d(new[key] - base[key]).double()
            got = LR.to_2d(reader.module(name).delta_weight()).double()
            measured = float((got - true).norm() / true.norm())
            assert measured == pytest.approx(rows[name].rel_error, rel=1e-4, abs=1e-6), name


def test_extract_registers_with_lineage_to_both_models(tuned):
    _cli("extract", "--base", "tiny", "--tuned", tuned, "--rank", "4", "--name", "from-tune")
    with Registry() as reg:
        record = reg.get_adapter("from-tune")
        assert record.source == "extracted"
        edges = {(e.parent_kind, e.parent_label, e.relation) for e in reg.lineage("from-tune")}
        assert edges == {
            ("model", "tiny", "extracted-from"),
            ("model", "tuned-sd1", "extracted-from"),
        }
        assert reg.get_model("tuned-sd1").kind == "tuned"


def _single_file(folder, dest):
    """The tiny SDXL pipeline as an SGM single-file checkpoint (the layout A1111/ComfyUI load)."""
    from lorahub.formats.names import diffusers_to_sgm

    unet = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    te = load_file(str(folder / "text_encoder" / "model.safetensors"))
    out = {}
    for key, value in unet.items():
        module, _, leaf = key.rpartition(".")
        out[f"model.diffusion_model.{diffusers_to_sgm(module, 'tiny-sdxl')}.{leaf}"] = value
    for key, value in te.items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        out[f"conditioner.embedders.0.transformer.{key}"] = value
    save_file(out, str(dest))
    return dest


def test_single_file_checkpoints_extract_like_folders(tiny_sdxl, tmp_path):
    folder = tmp_path / "tuned-xl"
    shutil.copytree(tiny_sdxl, folder)
    unet_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(str(unet_file))
    gen = torch.Generator().manual_seed(3)
    for key in list(weights)[::5]:  # change a fifth of the tensors
        weights[key] = weights[key] + 0.01 * torch.randn(weights[key].shape, generator=gen)
    save_file(weights, str(unet_file))
    options = ExtractOptions(rank=4)
    by_folder = extract_lora(tiny_sdxl, folder, tmp_path / "a.safetensors", options)
    by_file = extract_lora(
        _single_file(tiny_sdxl, tmp_path / "base.safetensors"),
        _single_file(folder, tmp_path / "tuned.safetensors"),
        tmp_path / "b.safetensors",
        options,
    )
    errors = {m.name: m.rel_error for m in by_folder.modules}
    assert {m.name: m.rel_error for m in by_file.modules} == pytest.approx(errors)
    assert inspect_file(tmp_path / "b.safetensors").base_family == "tiny-sdxl"
    assert any("cannot carry" in w for w in by_file.warnings)  # biases changed too
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_extract_bad_input_is_one_line(tiny_sd1, tuned, tmp_path):
    cases = [
        (["--base", "tiny", "--tuned", "tiny-sdxl", "--rank", "4"], "different architectures"),
        (["--base", "tiny", "--tuned", tiny_sd1, "--rank", "4"], "nothing to extract"),
        (["--base", "tiny", "--tuned", tuned], "--rank R or --energy E"),
        (["--base", "tiny", "--tuned", tmp_path / "missing", "--rank", "4"], "no such checkpoint"),
    ]
    for args, message in cases:
        result = _cli("extract", *args, "-o", tmp_path / "x.safetensors", ok=False)
        assert message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "x.safetensors").exists()
    pickle = tmp_path / "tuned.ckpt"
    torch.save({"state_dict": {}}, pickle)
    result = _cli(
        "extract",
        "--base",
        "tiny",
        "--tuned",
        pickle,
        "--rank",
        "4",
        "-o",
        tmp_path / "y",
        ok=False,
    )
    assert "pickle" in result.output and "--trust-pickle" in result.output
