"""Trainer variants and edges: text-encoder LoRA, SDXL, data layouts and bad folders, buckets,
config files, and the `lorahub train` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorahub.errors import InvalidInputError, TrainingError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from lorahub.training import demo_dataset

    return demo_dataset(tmp_path_factory.mktemp("v") / "shapes", count=8)


def _cfg(data, **kw):
    from lorahub.training import TrainConfig

    base = dict(data=str(data), resolution=64, max_train_steps=3, batch_size=2, learning_rate=1e-3,
                validation_prompts=("a red circle",), validation_inference_steps=2)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _images(pipe, prompt="a red circle"):
    import torch

    gen = torch.Generator().manual_seed(0)
    return pipe(prompt, num_inference_steps=2, generator=gen, output_type="np").images


def test_text_encoder_lora_is_saved_and_loads_in_plain_diffusers(shapes, tiny_sd1):
    import numpy as np
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    from lorahub.training import train

    result = train(
        _cfg(
            shapes,
            name="te",
            train_text_encoder=True,
            text_encoder_lr=5e-3,
            rank=2,
            alpha=1,
            gradient_checkpointing=True,
        )  # fmt: skip
    )
    with safe_open(result.weights_path, framework="pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    assert any(k.startswith("text_encoder.") and "q_proj.lora_A" in k for k in keys)
    adapter_meta = json.loads(meta["lora_adapter_metadata"])
    assert adapter_meta["text_encoder.lora_alpha"] == 1 and adapter_meta["text_encoder.r"] == 2
    assert (
        meta["ss_network_train_unet_only"] == "False" and float(meta["ss_text_encoder_lr"]) == 5e-3
    )
    assert set(result.record.components) == {"unet", "text_encoder"}
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    pipe.set_progress_bar_config(disable=True)
    ids = pipe.tokenizer(["a red circle"], return_tensors="pt").input_ids
    plain = pipe.text_encoder(ids)[0].detach()
    pipe.load_lora_weights(str(result.weights_path))
    assert not np.allclose(pipe.text_encoder(ids)[0].detach().numpy(), plain.numpy(), atol=1e-6)


def test_sdxl_tiny_trains_and_loads_in_plain_diffusers(shapes, tiny_sdxl):
    import numpy as np
    from diffusers import StableDiffusionXLPipeline

    from lorahub.formats import inspect_file
    from lorahub.training import train

    result = train(
        _cfg(shapes, base="tiny-sdxl", name="xl", train_text_encoder=True, cache_latents=True)
    )
    info = inspect_file(result.weights_path)
    assert info.base_family == "tiny-sdxl" and info.base_conflict is None
    assert set(info.components) == {"unet", "text_encoder", "text_encoder_2"}
    assert info.metadata["modelspec.architecture"] == "tiny-sdxl/lora"
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipe.set_progress_bar_config(disable=True)
    before = _images(pipe)
    pipe.load_lora_weights(str(result.weights_path))
    assert np.abs(_images(pipe) - before).max() > 1e-3


def test_dora_and_min_snr_v_prediction_train(shapes, tiny_sd1, tmp_path):
    """A v-prediction base (scheduler config edited) with min-SNR and DoRA runs and saves DoRA."""
    import shutil

    from lorahub.formats import inspect_file
    from lorahub.training import train

    base = tmp_path / "v-base"
    shutil.copytree(tiny_sd1, base)
    sched = base / "scheduler" / "scheduler_config.json"
    sched.write_text(
        json.dumps({**json.loads(sched.read_text()), "prediction_type": "v_prediction"})
    )
    result = train(
        _cfg(
            shapes,
            base=str(base),
            name="dora",
            use_dora=True,
            snr_gamma=5.0,
            register=False,
            mixed_precision="bf16",
            cpu=True,
        )  # fmt: skip
    )
    assert result.final_loss == result.final_loss  # not NaN
    assert any("training in fp32" in w for w in result.warnings)
    assert result.record is None
    info = inspect_file(result.weights_path)
    assert info.network_type == "dora"
    assert info.metadata["modelspec.prediction_type"] == "v_prediction"


def test_bad_data_folder_lists_every_bad_file(tmp_path, shapes):
    from lorahub.training.data import load_dataset

    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("000-red-circle.png", "001-red-circle.png"):
        (folder / name).write_bytes((shapes / "000-red-circle.png").read_bytes())
    (folder / "000-red-circle.txt").write_text("a red circle")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "broken.txt").write_text("broken")
    _truncated_jpeg(shapes / "000-red-circle.png", folder / "cut.jpg")  # passes PIL's verify()
    (folder / "cut.txt").write_text("cut")
    (folder / "dir.png").write_bytes((shapes / "000-red-circle.png").read_bytes())
    (folder / "dir.txt").mkdir()  # a caption that cannot be read
    with pytest.raises(TrainingError) as err:
        load_dataset(folder)
    message = str(err.value)
    assert "\n" not in message
    assert "2 unreadable images: broken.png, cut.jpg" in message
    assert "1 images without a caption" in message and "001-red-circle.png" in message
    assert "dir.txt (unreadable caption)" in message
    for name in ("broken.png", "cut.jpg", "dir.png"):
        (folder / name).unlink()
    data = load_dataset(folder, instance_prompt="a shape")
    assert [e.caption for e in data.examples] == ["a red circle", "a shape"]


def _truncated_jpeg(src: Path, dest: Path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(src).convert("RGB").save(buf, "JPEG")
    dest.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])


def test_missing_or_empty_folders_are_one_line_errors(tmp_path, shapes):
    from click.testing import CliRunner

    from lorahub.cli import main
    from lorahub.errors import NotFoundError
    from lorahub.paths import lorahub_home
    from lorahub.training import train
    from lorahub.training.data import load_dataset

    with pytest.raises(TrainingError, match="data folder not found"):
        train(_cfg(tmp_path / "nope"))
    with pytest.raises(NotFoundError, match="base model folder not found"):
        train(_cfg(shapes, name="nobase", base=str(tmp_path / "no-base")))
    (tmp_path / "not-a-pipeline").mkdir()
    with pytest.raises(NotFoundError, match="no model_index.json"):
        train(_cfg(shapes, name="nobase", base=str(tmp_path / "not-a-pipeline")))
    assert not (lorahub_home() / "runs" / "nobase").exists()
    out = CliRunner().invoke(main, ["train", "--data", str(shapes), "--base", "./gone/sd15"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "base model folder not found: ./gone/sd15" in out.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no images found"):
        load_dataset(tmp_path / "empty")


def test_metadata_jsonl_layout_and_its_errors(tmp_path, shapes):
    from lorahub.training.data import load_dataset

    folder = tmp_path / "meta"
    folder.mkdir()
    (folder / "a.png").write_bytes((shapes / "000-red-circle.png").read_bytes())
    rows = [{"file_name": "a.png", "text": "a red circle"}, {"file_name": "gone.png", "text": "x"}]
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{oops\n")
    with pytest.raises(TrainingError) as err:
        load_dataset(folder)
    assert "gone.png" in str(err.value) and "line 3" in str(err.value)
    (folder / "metadata.jsonl").write_text(json.dumps(rows[0]) + "\n")
    data = load_dataset(folder)
    assert data.kind == "metadata" and data.examples[0].caption == "a red circle"


def test_datasets_folder_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    import sys

    from lorahub.training.data import load_dataset

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the extra were not installed

    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "dataset_info.json").write_text("{}")
    with pytest.raises(TrainingError, match=r"pip install 'lorahub\[datasets\]'"):
        load_dataset(tmp_path / "hf")


def test_datasets_folder_when_the_extra_is_installed(tmp_path, shapes):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from lorahub.training.data import load_dataset

    img = Image.open(shapes / "000-red-circle.png").convert("RGB")
    ds = datasets.Dataset.from_dict({"image": [img, img], "text": ["a red circle", ""]})
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(TrainingError, match="row 1"):
        load_dataset(tmp_path / "hf")
    data = load_dataset(tmp_path / "hf", instance_prompt="a shape")
    assert [e.caption for e in data.examples] == ["a red circle", "a shape"]
    assert data.open(0).size == img.size and len(data.digest()) == 64


def test_mixed_sizes_go_to_aspect_buckets_and_epochs_are_reproducible(tmp_path):
    from PIL import Image

    from lorahub.training.data import (
        crop_geometry,
        load_dataset,
        load_pixels,
        make_buckets,
        pick_bucket,
        plan_epoch,
    )

    folder = tmp_path / "mixed"
    folder.mkdir()
    sizes = [(128, 64), (128, 64), (64, 128), (64, 128), (96, 96)]
    for i, size in enumerate(sizes):
        Image.new("RGB", size, (i * 40, 0, 0)).save(folder / f"{i}.png")
    data = load_dataset(folder, instance_prompt="x")
    choices = make_buckets(64, 16)
    assert (64, 64) in choices and all(w % 16 == 0 and h % 16 == 0 for w, h in choices)
    buckets = [pick_bucket(e.size, choices) for e in data.examples]
    assert (
        buckets[0][0] > buckets[0][1] and buckets[2][0] < buckets[2][1] and buckets[4] == (64, 64)
    )
    plan = plan_epoch(buckets, list(range(5)), 2, seed=1, epoch=0, flip=True, caption_dropout=0.5)
    assert all(len({buckets[it.index] for it in batch}) == 1 for batch in plan)
    assert sorted(it.index for batch in plan for it in batch) == list(range(5))
    assert plan == plan_epoch(
        buckets, list(range(5)), 2, seed=1, epoch=0, flip=True, caption_dropout=0.5
    )
    assert plan != plan_epoch(
        buckets, list(range(5)), 2, seed=1, epoch=1, flip=True, caption_dropout=0.5
    )
    pixels = load_pixels(data, plan[0][0], buckets[plan[0][0].index], center=False)
    assert tuple(pixels.shape[1:]) == buckets[plan[0][0].index][::-1]
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert crop_geometry((200, 100), (64, 64), (0.0, 0.0), center=True) == ((128, 64), (0, 32))


def test_demo_dataset_is_deterministic(tmp_path):
    from lorahub.training import demo_dataset

    a, b = demo_dataset(tmp_path / "a", count=6), demo_dataset(tmp_path / "b", count=6)
    files = sorted(p.name for p in a.iterdir())
    assert len(files) == 12 and (a / "003-green-circle.txt").read_text() == "a green circle"
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_config_files_and_bad_options(tmp_path):
    from lorahub.training import config_from_dict, load_config_file

    toml = tmp_path / "run.toml"
    toml.write_text('[train]\ndata = "d"\nrank = 8\ntarget-modules = ["to_q", "to_v"]\n')
    cfg = config_from_dict(load_config_file(toml))
    assert (cfg.rank, cfg.target_modules, cfg.lora_alpha) == (8, ("to_q", "to_v"), 8.0)
    yml = tmp_path / "run.yaml"
    yml.write_text("data: d\nalpha: 2\nvalidation_prompts: [a, b]\nlearning-rate: 1e-4\n")
    from_yaml = config_from_dict(load_config_file(yml))  # PyYAML reads 1e-4 as a string
    assert from_yaml.validation_prompts == ("a", "b") and from_yaml.learning_rate == 1e-4
    assert config_from_dict({"random_flip": "no", "rank": "8"}).random_flip is False
    for bad, says in (({"rank": "four"}, "rank must be an integer"), ({"rank": 1.5}, "integer"),
                      ({"random_flip": "maybe"}, "true or false"), ({"max_train_steps": None}, "integer")):  # fmt: skip
        with pytest.raises(InvalidInputError, match=says):
            config_from_dict(bad)
    with pytest.raises(InvalidInputError, match="unknown training option"):
        config_from_dict({"rnak": 4})
    with pytest.raises(InvalidInputError, match="mixed_precision"):
        config_from_dict({"mixed_precision": "fp8"})
    (tmp_path / "bad.toml").write_text("rank = = 3")
    with pytest.raises(InvalidInputError, match="cannot parse config"):
        load_config_file(tmp_path / "bad.toml")


def test_cli_train_json_with_config_file(shapes, tmp_path):
    from click.testing import CliRunner

    from lorahub.cli import main

    conf = tmp_path / "train.toml"
    conf.write_text(
        "resolution = 64\nmax_train_steps = 5\nrank = 8\nvalidation_inference_steps = 2\n"
    )
    args = ["train", "--config", str(conf), "--data", str(shapes), "--name", "cli-run",
            "--max-train-steps", "2", "--target-modules", "to_q,to_v", "--tags", "a,b",
            "--validation-prompts", "a red circle", "--json"]  # fmt: skip
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["steps"] == 2 and data["adapter"]["name"] == "cli-run"
    assert data["adapter"]["rank"] == 8 and set(data["adapter"]["targets"]) == {"to_q", "to_v"}
    assert sorted(data["adapter"]["tags"]) == ["a", "b"]
    assert Path(data["weights_path"]).is_file() and Path(data["before_after"]).is_file()

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already holds a trained adapter" in again.output
    resume = CliRunner().invoke(main, [*args, "--resume"])
    assert resume.exit_code == 1 and "holds a finished run" in resume.output
    fresh = [*args, "--name", "other-run", "--resume"]  # a bare --resume means latest
    resume = CliRunner().invoke(main, fresh)
    assert resume.exit_code == 1 and "no checkpoint to resume" in resume.output
    bad = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "missing"), "--json"])
    assert bad.exit_code == 1 and "data folder not found" in bad.output
    assert "Traceback" not in bad.output


def test_data_demo_names_the_builtin_shapes_set():
    from lorahub.training.data import load_dataset

    data = load_dataset("demo")
    assert len(data.examples) == 24
    assert {ex.caption.split()[-1] for ex in data.examples} >= {"circle", "square"}


def test_accelerate_launch_two_processes_trains_and_registers_once(tmp_path):
    """The scale-out path: the same command under `accelerate launch` (2 CPU processes, gloo)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LORAHUB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    train = ["-m", "lorahub", "train", "--data", "demo", "--name", "multi", "--resolution", "64",
             "--max-train-steps", "4", "--batch-size", "2", "--validation-inference-steps", "2", "--json"]  # fmt: skip
    out = subprocess.run([*launch, *train], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["steps"] == 4 and Path(result["weights_path"]).is_file()
    listed = subprocess.run([sys.executable, "-m", "lorahub", "list", "--json"], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert [r["name"] for r in json.loads(listed.stdout)] == ["multi"]
