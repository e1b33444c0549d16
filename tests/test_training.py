"""The trainer end to end on the tiny base: it learns, its file loads in plain diffusers with
the right alpha, it reports its metadata, registers with lineage, resumes exactly, and with
--cache-latents never calls the VAE or text encoder during steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorahub.errors import TrainingError

STEPS = 50
RANK, ALPHA = 4, 8.0  # alpha != rank: plain diffusers must read alpha from the file
PROMPTS = ("a red circle", "a blue square")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from lorahub.training import demo_dataset

    # purple: the colour the tiny base never saw, so training has something to teach
    return demo_dataset(tmp_path_factory.mktemp("demo") / "shapes", colours=("purple",))


@pytest.fixture(scope="session")
def trained(tiny_sd1, demo_data, tmp_path_factory):
    """ONE adapter trained for the whole session (50 steps, 64×64, alpha != rank), registered
    in its own LORAHUB_HOME; returns (result, home)."""
    import torch

    from lorahub.training import TrainConfig, train

    home = tmp_path_factory.mktemp("train-home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = TrainConfig(
        data=str(demo_data),
        name="shapes",
        resolution=64,
        rank=RANK,
        alpha=ALPHA,
        learning_rate=1e-3,
        max_train_steps=STEPS,
        batch_size=2,
        holdout=2,
        validation_prompts=PROMPTS,
        validation_steps=25,
        validation_inference_steps=4,
        trigger_words=("shapes",),
        tags=("demo",),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORAHUB_HOME", str(home))
        result = train(cfg)
    torch.set_num_threads(threads)
    return result, home


def test_training_lowers_the_heldout_loss(trained):
    result, _ = trained
    assert result.steps == STEPS
    assert result.heldout_loss_after < 0.95 * result.heldout_loss_before, (
        result.heldout_loss_before,
        result.heldout_loss_after,
    )


def test_run_folder_has_loss_curve_samples_and_grid(trained):
    from PIL import Image

    result, _ = trained
    rows = result.loss_csv.read_text().splitlines()
    assert rows[0] == "step,epoch,loss,lr"
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, STEPS + 1))
    assert result.loss_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in result.samples] == ["sample-00.png", "sample-01.png"]
    assert (result.output_dir / "samples" / "step-00000025" / "sample-01.png").is_file()
    assert (result.output_dir / "samples" / "before" / "sample-00.png").is_file()
    with Image.open(result.before_after) as grid:
        assert grid.width == 2 * 64 and grid.height > 2 * 64
    before = Image.open(result.output_dir / "samples" / "before" / "sample-00.png")
    assert before.tobytes() != Image.open(result.samples[0]).tobytes(), "training changed nothing"


def test_registered_with_lineage_and_preview(trained, monkeypatch):
    from lorahub.registry import Registry

    result, home = trained
    monkeypatch.setenv("LORAHUB_HOME", str(home))
    with Registry() as reg:
        rec = reg.get_adapter("shapes")
        edges = reg.lineage("shapes")
        preview = reg.preview_path("shapes")
    assert rec.source == "trained" and rec.path == str(result.weights_path)
    assert "demo" in rec.tags and list(rec.trigger_words) == ["shapes"]
    assert result.record is not None and result.record.name == "shapes"
    parents = {(e.parent_kind, e.relation) for e in edges}
    assert parents == {("model", "trained-from"), ("dataset", "trained-from")}
    assert any(result.dataset_hash in (e.parent_id, getattr(e, "parent_label", "")) for e in edges)
    assert preview is not None and preview.read_bytes() == result.samples[-1].read_bytes()


def _plain_pipe(tiny):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_out(unet):
    import torch

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    h = torch.randn(1, 77, 32, generator=gen)
    with torch.no_grad():
        return unet(x, torch.tensor([500]), h).sample


def test_plain_diffusers_loads_it_and_output_changes(trained, tiny_sd1):
    import numpy as np
    import torch

    result, _ = trained
    pipe = _plain_pipe(tiny_sd1)

    def run():
        gen = torch.Generator().manual_seed(0)
        return pipe("a red circle", num_inference_steps=3, generator=gen, output_type="np").images

    before = run()
    pipe.load_lora_weights(str(result.weights_path))
    assert np.abs(run() - before).max() > 1e-3


def test_plain_diffusers_reproduces_our_peft_forward_with_alpha(trained, tiny_sd1, tmp_path):
    """alpha != rank: diffusers must read alpha from the file, or its UNet differs from ours."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    result, _ = trained
    tensors = load_file(result.weights_path)
    ours = UNet2DConditionModel.from_pretrained(tiny_sd1, subfolder="unet")
    ours.add_adapter(
        LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    state = {k.removeprefix("unet."): v for k, v in tensors.items()}
    assert not set_peft_model_state_dict(ours, state).unexpected_keys
    expected = _unet_out(ours)

    pipe = _plain_pipe(tiny_sd1)
    pipe.load_lora_weights(str(result.weights_path))
    torch.testing.assert_close(_unet_out(pipe.unet), expected, rtol=1e-4, atol=1e-5)

    with safe_open(result.weights_path, framework="pt") as fh:
        meta = {k: v for k, v in fh.metadata().items() if k != "lora_adapter_metadata"}
    stripped = tmp_path / "no-alpha.safetensors"
    save_file(tensors, stripped, metadata=meta)
    naive = _plain_pipe(tiny_sd1)
    naive.load_lora_weights(str(stripped))
    assert not torch.allclose(_unet_out(naive.unet), expected, atol=1e-5), "test cannot tell alpha"


def test_inspect_reports_rank_alpha_targets_and_training(trained):
    from click.testing import CliRunner

    from lorahub.cli import main
    from lorahub.formats import inspect_file

    result, _ = trained
    info = inspect_file(result.weights_path)
    assert (
        info.format == "diffusers" and info.base_family == "tiny-sd1" and info.base_conflict is None
    )
    assert (info.rank, info.alpha) == (RANK, ALPHA)
    assert set(info.targets) == {"to_q", "to_k", "to_v", "to_out.0"}
    meta = info.metadata
    assert meta["ss_network_dim"] == "4" and float(meta["ss_network_alpha"]) == ALPHA
    assert meta["ss_max_train_steps"] == str(STEPS) and meta["ss_steps"] == str(STEPS)
    assert meta["ss_resolution"] == "(64, 64)" and meta["ss_seed"] == "0"
    assert float(meta["ss_learning_rate"]) == 1e-3 and meta["ss_sd_model_name"] == "tiny"
    assert meta["modelspec.trigger_phrase"] == "shapes" and meta["modelspec.title"] == "shapes"
    assert meta["lorahub.dataset_hash"] == result.dataset_hash and meta["lorahub.version"]
    out = CliRunner().invoke(main, ["inspect", str(result.weights_path), "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["rank"] == RANK and shown["alpha"] == ALPHA
    assert shown["summary"]["steps"] == STEPS


def _small(data, **kw):
    from lorahub.training import TrainConfig

    base = dict(data=str(data), resolution=64, learning_rate=1e-3, batch_size=3,
                validation_prompts=("a red circle",), validation_inference_steps=2)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_resume_ends_with_the_same_weights_and_interrupts_leave_nothing(demo_data, tmp_path):
    import torch
    from safetensors.torch import load_file

    from lorahub.errors import NotFoundError
    from lorahub.registry import Registry
    from lorahub.training import train

    opts = dict(max_train_steps=6, checkpointing_steps=3, gradient_accumulation_steps=2,
                lr_scheduler="linear", lr_warmup_steps=2, random_flip=True, center_crop=False,
                caption_dropout=0.3, snr_gamma=5.0, noise_offset=0.05)  # fmt: skip
    straight = train(_small(demo_data, name="straight", register=False, **opts))

    calls = []

    def interrupt(n=1, total=None, status=None):
        calls.append(n)
        if len(calls) == 4:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    cfg = _small(demo_data, name="resumed", output_dir=str(out), **opts)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=interrupt)
    assert not (out / "pytorch_lora_weights.safetensors").exists()
    with Registry() as reg, pytest.raises(NotFoundError):
        reg.get_adapter("resumed")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000003"]
    (out / "checkpoints" / ".tmp-step-00000005").mkdir()  # a half-written one is never "latest"
    with pytest.raises(TrainingError, match="--resume latest"):
        train(cfg)
    with pytest.raises(TrainingError, match="rank"):
        train(cfg.replace(resume="latest", rank=8))
    # The saved optimizer would silently keep the old learning rate: refused, values shown.
    with pytest.raises(TrainingError, match=r"learning_rate \(0.001 -> 0.5\)"):
        train(cfg.replace(resume="latest", learning_rate=0.5))
    with pytest.raises(TrainingError, match="dataset_hash"):  # other captions, other data
        train(cfg.replace(resume="latest", data=str(_relabelled(demo_data, tmp_path / "d2"))))

    resumed = train(cfg.replace(resume="latest"))
    assert resumed.resumed_from == 3 and resumed.steps == 6
    a, b = load_file(straight.weights_path), load_file(resumed.weights_path)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert len(resumed.loss_csv.read_text().splitlines()) == 1 + 6
    with Registry() as reg:
        assert reg.get_adapter("resumed").path == str(resumed.weights_path)
    with pytest.raises(TrainingError, match="finished run"):  # not retrained from step 3
        train(cfg.replace(resume="latest", register=False))


def _relabelled(folder: Path, dest: Path) -> Path:
    """A copy of a data folder with one caption changed."""
    import shutil

    shutil.copytree(folder, dest)
    first = sorted(dest.glob("*.txt"))[0]
    first.write_text(first.read_text() + ", changed")
    return dest


def test_an_exception_mid_run_leaves_no_weights_and_no_entry(demo_data, tmp_path):
    from lorahub.errors import NotFoundError
    from lorahub.registry import Registry
    from lorahub.training import train

    def boom(n=1, total=None, status=None):
        raise RuntimeError("disk full")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        train(_small(demo_data, name="boom", output_dir=str(out), max_train_steps=3), progress=boom)
    assert not (out / "pytorch_lora_weights.safetensors").exists()
    with Registry() as reg, pytest.raises(NotFoundError):
        reg.get_adapter("boom")


def _count_encoder_calls(cfg) -> list[int]:
    """Run `cfg`, counting VAE-encoder and text-encoder forwards; the count at each step's end."""
    import torch
    from diffusers.models.autoencoders.vae import Encoder
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from lorahub.training import train

    count = [0]

    def hook(module, args, output):
        if isinstance(module, (Encoder, CLIPTextModel, CLIPTextModelWithProjection)):
            count[0] += 1

    at_step: list[int] = []
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        train(cfg, progress=lambda n=1, total=None, status=None: at_step.append(count[0]))
    finally:
        handle.remove()
    return at_step


def test_cache_latents_calls_neither_vae_nor_text_encoder_per_step(demo_data):
    opts = dict(
        max_train_steps=4, random_flip=True, caption_dropout=0.5, register=False, force=True
    )
    cached = _count_encoder_calls(_small(demo_data, name="cached", cache_latents=True, **opts))
    assert len(cached) == 4 and cached[-1] - cached[0] == 0
    plain = _count_encoder_calls(_small(demo_data, name="uncached", **opts))
    assert plain[-1] - plain[0] >= 2 * 3, "the hook must see per-step encoder calls without caching"
