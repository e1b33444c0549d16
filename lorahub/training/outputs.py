"""What a finished run leaves: LoRA weights with metadata and the loss curve (lorahub.app.register
records the registry entry)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.errors import UnsupportedError
from lorahub.fileio import atomic_path, atomic_write_bytes
from lorahub.training.config import TrainConfig
from lorahub.training.setup import Models

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"


def save_weights(m: Models, accelerator: Any, dest: Path, metadata: dict[str, str]) -> Path:
    """Write the LoRA with diffusers' `save_lora_weights` (LoRA configs included, so plain
    diffusers reads alpha), then add the training metadata to the same file, atomically."""
    from peft import get_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    kwargs: dict[str, Any] = {}
    for name, model in m.trained:
        inner = accelerator.unwrap_model(model)
        state = get_peft_model_state_dict(inner)  # lora_A/lora_B: the layout diffusers writes now
        kwargs[f"{name}_lora_layers"] = {k: v.detach().float().cpu() for k, v in state.items()}
        kwargs[f"{name}_lora_adapter_metadata"] = inner.peft_config["default"].to_dict()
    with tempfile.TemporaryDirectory(prefix=".save-", dir=dest.parent) as tmp:
        type(m.pipe).save_lora_weights(tmp, weight_name=WEIGHTS_NAME, **kwargs)
        written = Path(tmp) / WEIGHTS_NAME
        tensors = load_file(str(written))
        with safe_open(str(written), framework="pt") as fh:
            merged = {**(fh.metadata() or {}), **metadata}
        with atomic_path(dest, suffix=".safetensors") as out:
            save_file(tensors, str(out), metadata=merged)
    return dest


def architecture(family: str, objective: str | None) -> tuple[str, str]:
    """(modelspec.architecture, ss_base_model_version) of a LoRA for a base of `family` trained
    for `objective` (SD2 names its 768 v-prediction and 512 epsilon bases apart)."""
    names = families.get(family).names_for(objective)
    if names is None:
        raise UnsupportedError(f"lorahub has no kohya/modelspec names for {family} yet")
    return f"{names.architecture}/lora", names.ss_base_model_version


def family(m: Models, base: str) -> str:
    """The family of the trained base: a tiny id's, else the family table's for its UNet."""
    width = m.unet.config.cross_attention_dim
    return families.of_base_id(base) or families.unet_family(width, len(m.text_encoders))


def training_metadata(cfg: TrainConfig, m: Models, facts: dict[str, Any]) -> dict[str, str]:
    """Safetensors metadata in the names community tools read (ss_*, modelspec.*), plus ours."""
    prediction = m.scheduler.config.prediction_type
    arch, version = architecture(facts["base_family"], prediction)
    meta = {
        **_kohya_metadata(cfg, facts, version),
        **_modelspec_metadata(cfg, facts, arch, prediction),
    }
    return {k: str(v) for k, v in meta.items()}


def _kohya_metadata(cfg: TrainConfig, facts: dict[str, Any], version: str) -> dict[str, Any]:
    """The ss_* keys kohya's scripts write (what A1111, ComfyUI and civitai read)."""
    w, h = facts["resolution"]
    te_lr = cfg.text_encoder_lr or cfg.learning_rate
    return {
        "ss_output_name": facts["name"],
        "ss_sd_model_name": cfg.base,
        "ss_base_model_version": version,
        "ss_v2": str(version.startswith("sd_v2")),
        "ss_network_dim": cfg.rank,
        "ss_network_alpha": cfg.lora_alpha,
        "ss_network_args": json.dumps(
            {"use_dora": cfg.use_dora, "target_modules": list(cfg.target_modules)}
        ),
        "ss_network_train_unet_only": str(not cfg.train_text_encoder),
        "ss_max_train_steps": cfg.max_train_steps,
        "ss_steps": facts["steps"],
        "ss_epoch": facts["epochs"],
        "ss_num_train_images": facts["num_images"],
        "ss_learning_rate": cfg.learning_rate,
        "ss_unet_lr": cfg.learning_rate,
        "ss_text_encoder_lr": te_lr if cfg.train_text_encoder else 0.0,
        "ss_lr_scheduler": cfg.lr_scheduler,
        "ss_lr_warmup_steps": cfg.lr_warmup_steps,
        "ss_batch_size_per_device": cfg.batch_size,
        "ss_gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "ss_max_grad_norm": cfg.max_grad_norm,
        "ss_optimizer": "bitsandbytes.optim.AdamW8bit"
        if cfg.use_8bit_adam
        else "torch.optim.AdamW",
        "ss_mixed_precision": facts["mixed_precision"],
        "ss_gradient_checkpointing": str(cfg.gradient_checkpointing),
        "ss_cache_latents": str(cfg.cache_latents),
        "ss_min_snr_gamma": cfg.snr_gamma or 0,
        "ss_noise_offset": cfg.noise_offset,
        "ss_caption_dropout_rate": cfg.caption_dropout,
        "ss_flip_aug": str(cfg.random_flip),
        "ss_resolution": f"({w}, {h})",
        "ss_seed": cfg.seed,
        "ss_tag_frequency": json.dumps({facts["dataset_name"]: facts["tag_frequency"]}),
        "ss_training_started_at": facts["started_at"],
        "ss_training_finished_at": time.time(),
    }


def _modelspec_metadata(
    cfg: TrainConfig, facts: dict[str, Any], arch: str, prediction: str
) -> dict[str, Any]:
    """The modelspec.* keys (SAI's model spec) and lorahub's own (base, data set, config)."""
    from lorahub import __version__

    w, h = facts["resolution"]
    meta: dict[str, Any] = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch,
        "modelspec.implementation": "https://github.com/huggingface/diffusers",
        "modelspec.title": facts["name"],
        "modelspec.resolution": f"{w}x{h}",
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "modelspec.prediction_type": prediction,
        "lorahub.version": __version__,
        "lorahub.base_model": cfg.base,
        "lorahub.base_family": facts["base_family"],
        "lorahub.target_modules": ",".join(cfg.target_modules),
        "lorahub.dataset_hash": facts["dataset_hash"],
        "lorahub.train_config": json.dumps(cfg.to_json(), sort_keys=True),
    }
    if cfg.trigger_words:
        meta["modelspec.trigger_phrase"] = ", ".join(cfg.trigger_words)
    if cfg.description:
        meta["modelspec.description"] = cfg.description
    return meta


def write_loss_csv(rows: list[dict[str, Any]], dest: Path) -> Path:
    """step,epoch,loss,lr, one row per optimizer step."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "epoch", "loss", "lr"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_bytes(dest, buf.getvalue().encode())


def plot_loss(rows: list[dict[str, Any]], dest: Path, title: str) -> Path:
    """The loss curve (raw and smoothed) as a PNG, drawn with matplotlib's Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, losses, alpha=0.35, label="loss")
    ax.plot(steps, _ema(losses), label="smoothed")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return dest


def _ema(values: list[float], beta: float = 0.9) -> list[float]:
    out, avg = [], None
    for v in values:
        avg = v if avg is None else beta * avg + (1 - beta) * v
        out.append(avg)
    return out
