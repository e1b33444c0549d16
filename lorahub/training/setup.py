"""Setting a run up: accelerator, frozen base components, LoRA layers, optimizer, LR schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorahub.errors import NotFoundError, TrainingError
from lorahub.training.config import TEXT_TARGETS, TrainConfig


@dataclass
class Models:
    """The base pipeline's parts as the trainer uses them."""

    pipe: Any
    unet: Any
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    scheduler: Any  # DDPMScheduler built from the base's scheduler config
    is_sdxl: bool
    weight_dtype: Any
    device: Any
    trained: list[tuple[str, Any]] = field(default_factory=list)  # (name, model), prepare order

    @property
    def text_names(self) -> list[str]:
        return ["text_encoder", "text_encoder_2"][: len(self.text_encoders)]

    @property
    def latent_multiple(self) -> int:
        """Pixel sides must be multiples of this (VAE downscale × UNet downsamplings)."""
        vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def default_resolution(self) -> int:
        vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        size = self.unet.config.sample_size
        return int((size[0] if isinstance(size, (list, tuple)) else size) * vae_scale)


def reset_accelerate_state() -> None:
    """Forget a previous run's accelerator settings in this process (keeps the process group)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def make_accelerator(cfg: TrainConfig, output_dir: Path) -> tuple[Any, list[str]]:
    """An Accelerator; mixed precision only on CUDA (CPU trains in fp32), with a warning."""
    import torch
    from accelerate import Accelerator

    warnings = []
    precision = cfg.mixed_precision
    if precision != "no" and (cfg.cpu or not torch.cuda.is_available()):
        warnings.append(f"mixed precision {precision} needs CUDA: training in fp32 on the CPU")
        precision = "no"
    reset_accelerate_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=precision,
        cpu=cfg.cpu,
        project_dir=str(output_dir),
    )
    return accelerator, warnings


def check_base(base: str) -> None:
    """Fail early, in one line, on a base that names a missing or non-diffusers folder."""
    from lorahub.tiny import is_tiny

    if is_tiny(base):
        return
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise NotFoundError(
                f"base {base}: not a diffusers pipeline folder (no model_index.json)"
            )
        return
    # A Hub id is `owner/name`; anything else that looks like a path must exist.
    if base.startswith(("/", ".", "~")) or base.count("/") > 1 or "\\" in base:
        raise NotFoundError(f"base model folder not found: {base}")


def load_models(cfg: TrainConfig, accelerator: Any) -> Models:
    """Load the base pipeline, freeze it, and move it to the accelerator's device and dtype."""
    import torch
    from diffusers import DDPMScheduler

    from lorahub.models import load_pipeline, quiet_diffusers
    from lorahub.tiny import resolve_base

    quiet_diffusers()
    device = accelerator.device
    try:
        pipe = load_pipeline(cfg.base, device=str(device), dtype="fp32")
        scheduler = DDPMScheduler.from_pretrained(resolve_base(cfg.base), subfolder="scheduler")
    except (OSError, ValueError) as exc:  # diffusers' own words for a missing or odd base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotFoundError(f"cannot load base model {cfg.base!r}: {first}") from None
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    m = models_of(pipe, scheduler, dtype, device)
    for module in (pipe.unet, pipe.vae, *m.text_encoders):
        module.requires_grad_(False)
    pipe.unet.to(device, dtype=dtype)
    for enc in m.text_encoders:
        enc.to(device, dtype=dtype)
    pipe.vae.to(device, dtype=torch.float32)  # fp16 VAEs overflow (SDXL); it is never trained
    return m


def models_of(pipe: Any, scheduler: Any, dtype: Any, device: Any) -> Models:
    """A loaded pipeline's parts as the trainer (and the weight search) use them."""
    encoders = [
        e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None
    ]
    tokenizers = [t for t in (pipe.tokenizer, getattr(pipe, "tokenizer_2", None)) if t is not None]
    is_sdxl = getattr(pipe.unet.config, "addition_embed_type", None) == "text_time"
    return Models(
        pipe, pipe.unet, pipe.vae, encoders, tokenizers, scheduler, is_sdxl, dtype, device
    )


def add_lora(m: Models, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Attach peft LoRA layers (gaussian init, optional DoRA); return optimizer parameter groups."""
    import torch
    from peft import LoraConfig

    def lora(targets: tuple[str, ...]) -> Any:
        return LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.lora_alpha,
            init_lora_weights="gaussian",
            target_modules=list(targets),
            use_dora=cfg.use_dora,
        )

    try:
        m.unet.add_adapter(lora(cfg.target_modules))
    except ValueError as exc:
        raise TrainingError(f"cannot add LoRA to the UNet: {str(exc).splitlines()[0]}") from None
    m.unet.train()
    m.trained = [("unet", m.unet)]
    if cfg.train_text_encoder:
        for name, enc in zip(m.text_names, m.text_encoders, strict=True):
            enc.add_adapter(lora(TEXT_TARGETS))
            enc.train()
            m.trained.append((name, enc))
    for i, (_, model) in enumerate(m.trained):
        _seeded_lora_init(model, cfg.rank, cfg.seed * 1_000_003 + i)
    if m.weight_dtype != torch.float32:
        from diffusers.training_utils import cast_training_params

        cast_training_params([model for _, model in m.trained], dtype=torch.float32)
    if cfg.gradient_checkpointing:
        m.unet.enable_gradient_checkpointing()
        for _, enc in m.trained[1:]:
            enc.gradient_checkpointing_enable()
    groups = [{"params": _trainable(m.unet), "lr": cfg.learning_rate}]
    te_lr = cfg.text_encoder_lr or cfg.learning_rate
    groups += [{"params": _trainable(enc), "lr": te_lr} for _, enc in m.trained[1:]]
    return groups


def _seeded_lora_init(model: Any, rank: int, seed: int) -> None:
    """Draw every lora_A again, in sorted name order, from one seeded generator (peft's gaussian
    init, std 1/r): peft creates the layers in the order of a set of target names, which changes
    with the process's hash seed, so its own draws made the same run differ from one process to
    the next. lora_B stays zero."""
    import torch

    gen = torch.Generator().manual_seed(seed % 2**63)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if ".lora_A." in name:
                draw = torch.randn(param.shape, generator=gen, dtype=torch.float32) / rank
                param.copy_(draw.to(param.device, param.dtype))


def _trainable(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(cfg: TrainConfig, groups: list[dict[str, Any]]) -> Any:
    """AdamW, or bitsandbytes' 8-bit AdamW when asked for (and installed)."""
    import torch

    cls: Any = torch.optim.AdamW
    if cfg.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise TrainingError(
                "use_8bit_adam needs bitsandbytes (pip install bitsandbytes)"
            ) from None
        cls = bnb.optim.AdamW8bit
    return cls(
        groups,
        lr=cfg.learning_rate,
        betas=(0.9, 0.999),
        weight_decay=cfg.adam_weight_decay,
        eps=1e-8,
    )


def make_lr_scheduler(cfg: TrainConfig, optimizer: Any, num_processes: int) -> Any:
    """diffusers' LR schedule with warm-up (counted per process, as accelerate steps it)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        cfg.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=cfg.lr_warmup_steps * num_processes,
        num_training_steps=cfg.max_train_steps * num_processes,
    )
