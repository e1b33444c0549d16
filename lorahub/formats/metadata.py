"""Training facts from kohya `ss_*`, `modelspec.*` and diffusers `lora_adapter_metadata`."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

SS_FIELDS = {
    "steps": ("ss_max_train_steps", "ss_steps"),
    "epochs": ("ss_num_epochs", "ss_epoch"),
    "resolution": ("ss_resolution",),
    "learning_rate": ("ss_learning_rate",),
    "unet_lr": ("ss_unet_lr",),
    "text_encoder_lr": ("ss_text_encoder_lr",),
    "network_dim": ("ss_network_dim",),
    "network_alpha": ("ss_network_alpha",),
    "network_module": ("ss_network_module",),
    "network_args": ("ss_network_args",),
    "base_model_name": ("ss_sd_model_name",),
    "base_model_version": ("ss_base_model_version",),
    "training_comment": ("ss_training_comment",),
    "num_train_images": ("ss_num_train_images",),
    "batch_size": ("ss_total_batch_size", "ss_batch_size_per_device"),
    "optimizer": ("ss_optimizer",),
    "lr_scheduler": ("ss_lr_scheduler",),
    "mixed_precision": ("ss_mixed_precision",),
    "seed": ("ss_seed",),
    "output_name": ("ss_output_name",),
}
MODELSPEC_FIELDS = (
    "title",
    "trigger_phrase",
    "architecture",
    "description",
    "author",
    "date",
    "license",
    "tags",
    "resolution",
    "implementation",
)


def summarize_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """A compact dict of the training facts found in the metadata (absent facts omitted)."""
    out: dict[str, Any] = {}
    for field, keys in SS_FIELDS.items():
        for key in keys:
            value = metadata.get(key)
            if value not in (None, "", "None"):
                out[field] = _parse_value(value, field)
                break
    for field in MODELSPEC_FIELDS:
        value = metadata.get(f"modelspec.{field}")
        if value:
            out[f"modelspec_{field}"] = value
    diffusers_meta = metadata.get("lora_adapter_metadata")
    if diffusers_meta:
        try:
            out["lora_config"] = _condense_lora_config(json.loads(diffusers_meta))
        except (json.JSONDecodeError, AttributeError):
            out["lora_config"] = diffusers_meta
    return out


LORA_CONFIG_KEYS = (
    "r",
    "lora_alpha",
    "target_modules",
    "use_dora",
    "rank_pattern",
    "alpha_pattern",
)


def _condense_lora_config(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per component, the LoRA settings that matter (diffusers stores peft's whole LoraConfig)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        component, _, field = key.rpartition(".")
        if field in LORA_CONFIG_KEYS and value not in (None, {}, []):
            if isinstance(value, list):
                value = sorted(value)
            out.setdefault(component or "unet", {})[field] = value
    return out


def _parse_value(value: str, field: str) -> Any:
    if field == "network_args":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def trigger_words(metadata: dict[str, str], limit: int = 5) -> list[str]:
    """Suggested trigger words: `modelspec.trigger_phrase`, then the most frequent dataset tags."""
    words: list[str] = []
    phrase = metadata.get("modelspec.trigger_phrase", "")
    for part in phrase.split(","):
        if part.strip() and part.strip() not in words:
            words.append(part.strip())
    for tag, _ in tag_frequency(metadata).most_common():
        if len(words) >= limit + (1 if phrase else 0):
            break
        if tag not in words:
            words.append(tag)
    return words


def tag_frequency(metadata: dict[str, str]) -> Counter[str]:
    """Tag counts summed over the datasets of `ss_tag_frequency`."""
    counts: Counter[str] = Counter()
    raw = metadata.get("ss_tag_frequency")
    if not raw:
        return counts
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return counts
    if not isinstance(data, dict):
        return counts
    for tags in data.values():
        if isinstance(tags, dict):
            for tag, n in tags.items():
                if isinstance(n, (int, float)) and str(tag).strip():
                    counts[str(tag).strip()] += int(n)
    return counts
