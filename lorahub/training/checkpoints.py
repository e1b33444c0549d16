"""Resumable checkpoints: `accelerator.save_state` into a temporary folder, renamed when complete.

A checkpoint folder `checkpoints/step-NNNNNNNN` holds the LoRA weights of each trained model
(safetensors, via save/load hooks so the frozen base is never copied), the optimizer, LR
scheduler and RNG states, and `trainer_state.json` (step, epoch, data position, seed, losses).
It exists complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lorahub.errors import TrainingError

STATE_FILE = "trainer_state.json"
PREFIX = "step-"
# TrainConfig fields that may change when a run is resumed: where and how it is shown, how far it
# goes, and how it computes (not what). Every other field, the training resolution and the data
# set's hash must match the checkpoint, or the continued run would silently differ from the one
# that was started (an optimizer's saved learning rate, for one, overrides a new --learning-rate).
FREE_KEYS = frozenset(
    {
        "data",  # the folder may move; its content is checked by hash
        "instance_prompt",  # changes captions, which the data set's hash covers
        "name",
        "output_dir",
        "resume",
        "force",
        "register",
        "tags",
        "description",
        "trigger_words",
        "max_train_steps",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "validation_prompts",
        "validation_steps",
        "validation_inference_steps",
        "validation_seed",
        "dataloader_workers",
        "cpu",
        "mixed_precision",
        "gradient_checkpointing",
    }
)


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def register_hooks(accelerator: Any, names: list[str]) -> None:
    """Save and load only the LoRA parameters of the prepared models (named in prepare order)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        for name, model in zip(names, models, strict=False):
            state = get_peft_model_state_dict(accelerator.unwrap_model(model))
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in state.items()},
                str(Path(output_dir) / f"lora_{name}.safetensors"),
            )
        while weights:
            weights.pop()

    def load_hook(models: list, input_dir: str) -> None:
        loaded = list(models)
        while models:
            models.pop()
        for name, model in zip(names, loaded, strict=False):
            state = load_file(str(Path(input_dir) / f"lora_{name}.safetensors"))
            result = set_peft_model_state_dict(accelerator.unwrap_model(model), state)
            if getattr(result, "unexpected_keys", None):
                raise TrainingError(f"checkpoint {input_dir} does not fit this model ({name})")

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(
    accelerator: Any, output_dir: Path, state: dict[str, Any], limit: int | None
) -> Path:
    """Write a complete checkpoint for `state["step"]` (every process calls this), then prune.

    All processes save into one temporary folder; the main process adds the JSON and renames
    it into place, so a reader sees the checkpoint complete or not at all.
    """
    root = checkpoints_dir(output_dir)
    dest = root / f"{PREFIX}{state['step']:08d}"
    tmp = root / f".tmp-{dest.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        prune(output_dir, limit)
    accelerator.wait_for_everyone()
    return dest


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written temporary folders are ignored)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(output_dir: Path, limit: int | None) -> None:
    """Remove the oldest checkpoints beyond `limit` (None or 0: keep all)."""
    found = list_checkpoints(output_dir)
    for old in found[: max(0, len(found) - limit)] if limit else []:
        shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(output_dir: Path, resume: str) -> Path:
    """The checkpoint `--resume` names: `latest` in this run, or a checkpoint folder."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise TrainingError(f"no checkpoint to resume in {checkpoints_dir(output_dir)}")
        return found[-1]
    path = Path(resume).expanduser()
    if not (path / STATE_FILE).is_file():
        raise TrainingError(f"not a complete checkpoint: {resume} (no {STATE_FILE})")
    return path


def read_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read checkpoint {checkpoint}: {exc}") from None


def check_compatible(saved: dict[str, Any], config: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to continue a checkpoint made with different model, data or optimizer settings.

    Only the settings the checkpoint recorded are compared, so a field added to TrainConfig
    later does not make older checkpoints unresumable."""
    diffs = [k for k in sorted(saved) if saved[k] != config.get(k)]
    if diffs:
        shown = ", ".join(f"{k} ({_short(saved.get(k))} -> {_short(config.get(k))})" for k in diffs)
        raise TrainingError(
            f"checkpoint {checkpoint.name} was made with different settings: {shown}; "
            "resume with the same settings, or train anew with --force"
        )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:12] + "..."
