"""Training facts from kohya `ss_*`, `modelspec.*` and diffusers `lora_adapter_metadata`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lorahub.formats import untrusted

MAX_TEXT = 2000  # characters of one metadata text kept in a summary
MAX_TRIGGERS = 16  # trigger words taken from one phrase
MAX_WORD = 100  # characters of one trigger word

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
        config = untrusted.loads(diffusers_meta)
        out["lora_config"] = (
            _condense_lora_config(config) if isinstance(config, dict) else _text(diffusers_meta)
        )
    return {k: _text(v) if isinstance(v, str) else v for k, v in out.items()}


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"


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
        parsed = untrusted.loads(value)
        return value if parsed is None else parsed
    number = untrusted.parse_number(value)
    return value if number is None else number


def trigger_words(metadata: dict[str, str], limit: int = 5) -> list[str]:
    """Suggested trigger words: `modelspec.trigger_phrase`, then the most frequent dataset tags."""
    words: list[str] = []
    phrase = metadata.get("modelspec.trigger_phrase", "")
    for part in phrase.split(",", 4 * MAX_TRIGGERS)[: 4 * MAX_TRIGGERS]:
        word = part.strip()[:MAX_WORD]
        if word and word not in words:
            words.append(word)
            if len(words) == MAX_TRIGGERS:
                break
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
    data = untrusted.loads(raw)
    if not isinstance(data, dict):
        return counts
    for tags in data.values():
        if isinstance(tags, dict):
            for tag, n in tags.items():
                n = untrusted.number(n)
                if n is not None and n > 0 and str(tag).strip():
                    counts[str(tag).strip()[:MAX_WORD]] += int(n)
    return counts
