"""What a training run is told (TrainConfig) and what it hands back (TrainResult).

A config comes from keyword arguments, a TOML/YAML file, or CLI flags (the field names in
kebab-case); `config_from_dict` is the one place those are checked.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.errors import InvalidInputError

UNET_TARGETS = families.UNET_TARGETS  # ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = families.TEXT_TARGETS  # ("q_proj", "k_proj", "v_proj", "out_proj")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field carrying its CLI help text."""
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (and nothing about how it is shown)."""

    data: str = _f(
        "", "Data folder: images + .txt captions, metadata.jsonl, a datasets folder, or `demo`."
    )
    base: str = _f("tiny", "Base model: tiny, tiny-sdxl, a diffusers folder or a Hub id.")
    name: str | None = _f(None, "Adapter name (default: from the data folder).")
    output_dir: str | None = _f(None, "Run folder (default: LORAHUB_HOME/runs/NAME).")
    instance_prompt: str | None = _f(None, "Caption for images that have none.")
    resolution: int | None = _f(None, "Training resolution in pixels (default: the base's).")
    center_crop: bool = _f(True, "Center crop (else random crop).")
    random_flip: bool = _f(False, "Randomly flip images horizontally.")
    caption_dropout: float = _f(0.0, "Probability of training on an empty caption.")
    bucketing: bool = _f(True, "Aspect-ratio buckets for images of mixed sizes.")
    holdout: int = _f(0, "Images kept out of training to measure the held-out loss.")
    rank: int = _f(4, "LoRA rank.")
    alpha: float | None = _f(None, "LoRA alpha (default: the rank).")
    target_modules: tuple[str, ...] = _f(UNET_TARGETS, "UNet modules to adapt.", sep=",")
    use_dora: bool = _f(False, "Train a DoRA (weight-decomposed LoRA).")
    train_text_encoder: bool = _f(False, "Also train a LoRA on the text encoder(s).")
    text_encoder_lr: float | None = _f(
        None, "Text-encoder learning rate (default: --learning-rate)."
    )
    learning_rate: float = _f(1e-4, "Learning rate.")
    lr_scheduler: str = _f("constant", f"LR schedule: {', '.join(LR_SCHEDULERS)}.")
    lr_warmup_steps: int = _f(0, "LR warm-up steps.")
    max_train_steps: int = _f(500, "Optimizer steps to train.")
    batch_size: int = _f(1, "Images per batch (per device).")
    gradient_accumulation_steps: int = _f(1, "Batches per optimizer step.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0: off).")
    adam_weight_decay: float = _f(1e-2, "AdamW weight decay.")
    use_8bit_adam: bool = _f(False, "8-bit AdamW (needs bitsandbytes).")
    mixed_precision: str = _f("no", "no, fp16 or bf16 (CUDA only; CPU trains in fp32).")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")
    cache_latents: bool = _f(False, "Encode images and captions once (no VAE/text work per step).")
    snr_gamma: float | None = _f(None, "Min-SNR-gamma loss weighting (e.g. 5.0).")
    noise_offset: float = _f(0.0, "Noise offset (e.g. 0.05).")
    seed: int = _f(0, "Random seed.")
    checkpointing_steps: int = _f(0, "Save a resumable checkpoint every N steps (0: never).")
    checkpoints_total_limit: int | None = _f(3, "Keep at most this many checkpoints.")
    validation_prompts: tuple[str, ...] = _f((), "Prompts for sample images.", sep="|")
    validation_steps: int = _f(0, "Sample images every N steps (0: at the end only).")
    validation_inference_steps: int = _f(20, "Denoising steps per sample image.")
    validation_seed: int = _f(1234, "Seed of the sample images.")
    dataloader_workers: int = _f(0, "Data loader worker processes.")
    cpu: bool = _f(False, "Train on the CPU even if a GPU is present.")
    register: bool = _f(True, "Register the adapter when training ends.")
    force: bool = _f(False, "Overwrite an existing run or adapter of that name.")
    tags: tuple[str, ...] = _f((), "Tags of the registered adapter.", sep=",")
    description: str | None = _f(None, "Description of the registered adapter.")
    trigger_words: tuple[str, ...] = _f((), "Trigger words of the registered adapter.", sep=",")
    resume: str | None = _f(None, "Resume from `latest` or a checkpoint folder.")

    def __post_init__(self) -> None:
        try:
            check_config(self)
        except TypeError as exc:  # a value of the wrong type, passed in code
            raise InvalidInputError(f"invalid training config: {exc}") from None

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def check_config(cfg: TrainConfig) -> None:
    """Raise InvalidInputError for values no run could use."""
    problems = []
    if cfg.rank < 1:
        problems.append(f"rank must be >= 1 (got {cfg.rank})")
    if cfg.max_train_steps < 1:
        problems.append(f"max_train_steps must be >= 1 (got {cfg.max_train_steps})")
    if cfg.batch_size < 1 or cfg.gradient_accumulation_steps < 1:
        problems.append("batch_size and gradient_accumulation_steps must be >= 1")
    if not 0.0 <= cfg.caption_dropout <= 1.0:
        problems.append(f"caption_dropout must be in [0, 1] (got {cfg.caption_dropout})")
    if cfg.mixed_precision not in MIXED_PRECISION:
        problems.append(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}")
    if cfg.lr_scheduler not in LR_SCHEDULERS:
        problems.append(f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}")
    if cfg.resolution is not None and cfg.resolution < 8:
        problems.append(f"resolution must be >= 8 (got {cfg.resolution})")
    if not cfg.target_modules:
        problems.append("target_modules must name at least one module")
    if cfg.holdout < 0 or cfg.checkpointing_steps < 0 or cfg.validation_steps < 0:
        problems.append("holdout, checkpointing_steps and validation_steps must be >= 0")
    if problems:
        raise InvalidInputError("invalid training config: " + "; ".join(problems))


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def _coerce(name: str, value: Any) -> Any:
    """Turn a file or CLI value into the field's type (tuples from lists or separated strings).

    Numbers may come as strings (PyYAML reads `1e-4` as one), booleans as true/false/yes/no;
    anything else of the wrong type is an InvalidInputError naming the option."""
    f = FIELDS[name]
    sep = f.metadata.get("sep")
    if sep and value is not None:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(sep) if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _wrong(name, "a list", value)
        return tuple(str(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    kind = str(f.type).replace(" | None", "")
    if value is None:
        if "None" in str(f.type):
            return None
        raise _wrong(name, EXPECTED.get(kind, f"a {kind}"), value)
    try:
        return _convert(kind, value)
    except (ValueError, TypeError):
        raise _wrong(name, EXPECTED.get(kind, f"a {kind}"), value) from None


def _convert(kind: str, value: Any) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise ValueError(value)
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise TypeError(value)
    if kind == "int":
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if kind == "float":
        return float(value)
    return str(value)


def _wrong(name: str, expected: str, value: Any) -> InvalidInputError:
    return InvalidInputError(
        f"invalid training config: {name.replace('_', '-')} must be {expected} (got {value!r})"
    )


def config_from_dict(data: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Build a TrainConfig from a dict (keys in snake_case or kebab-case) over `base`."""
    values = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown training option(s): {', '.join(unknown)}")
    changes = {k: _coerce(k, v) for k, v in values.items()}
    try:
        return dataclasses.replace(base or TrainConfig(), **changes)
    except TypeError as exc:
        raise InvalidInputError(f"invalid training config: {exc}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into a dict (a `[train]` table is unwrapped)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInputError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as exc:  # each parser has its own error class
        raise InvalidInputError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"config {path} must be a table of options")
    return data.get("train", data) if isinstance(data.get("train"), dict) else data


@dataclass
class TrainResult:
    """What a finished run produced."""

    weights_path: Path
    output_dir: Path
    record: Any  # registry AdapterRecord, or None when not registered
    final_loss: float
    heldout_loss_before: float
    heldout_loss_after: float
    steps: int
    epochs: int
    samples: list[Path]
    before_after: Path | None
    loss_csv: Path
    loss_plot: Path | None
    seconds: float
    resumed_from: int | None = None
    dataset_hash: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        rec = self.record
        return {
            "weights_path": str(self.weights_path),
            "output_dir": str(self.output_dir),
            "adapter": rec.to_json() if rec is not None and hasattr(rec, "to_json") else None,
            "final_loss": self.final_loss,
            "heldout_loss_before": self.heldout_loss_before,
            "heldout_loss_after": self.heldout_loss_after,
            "steps": self.steps,
            "epochs": self.epochs,
            "samples": [str(p) for p in self.samples],
            "before_after": str(self.before_after) if self.before_after else None,
            "loss_csv": str(self.loss_csv),
            "loss_plot": str(self.loss_plot) if self.loss_plot else None,
            "seconds": round(self.seconds, 3),
            "resumed_from": self.resumed_from,
            "dataset_hash": self.dataset_hash,
            "warnings": self.warnings,
        }
