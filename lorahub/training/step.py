"""The training step: latents, text conditioning, noise, target and loss, done correctly.

latents = (VAE sample - shift_factor) × scaling_factor; the UNet is conditioned on the text
encoder's hidden states (SDXL: both encoders' penultimate states concatenated, the pooled
embedding and add_time_ids); noise is added with the base's scheduler at random timesteps;
the target is the noise, the velocity or the sample per `prediction_type`; MSE loss, optionally
min-SNR-γ weighted (for epsilon and v-prediction) and with noise offset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lorahub.training.config import TrainConfig
from lorahub.training.setup import Models

EVAL_TIMESTEPS = 8
EVAL_SEED = 4242


@dataclass
class Batch:
    """What one UNet call needs before noise: latent distribution, text conditioning, time ids."""

    mean: Any
    std: Any
    hidden: Any
    pooled: Any = None
    time_ids: Any = None


@dataclass
class Caches:
    """VAE latent distributions per (image, flip) and text encodings per caption."""

    latents: dict[tuple[int, bool], tuple[Any, Any]] = field(default_factory=dict)
    text: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def generator(seed: int, micro_step: int, process: int, device: Any) -> Any:
    """The step's random source: a function of (seed, micro-step, process), so resumes match."""
    import torch

    gen = torch.Generator(device=device)
    return gen.manual_seed((seed * 1_000_003 + micro_step * 7_919 + process * 104_729) % 2**63)


def encode_text(m: Models, captions: list[str]) -> tuple[Any, Any]:
    """(hidden states, pooled) of the captions as the pipelines compute them."""
    import torch

    hidden, pooled = [], None
    for tok, enc in zip(m.tokenizers, m.text_encoders, strict=True):
        ids = tok(
            captions,
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(m.device)
        if m.is_sdxl:
            out = enc(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        else:
            hidden.append(enc(ids)[0])
    return torch.cat(hidden, dim=-1), pooled


def encode_images(m: Models, pixels: Any) -> tuple[Any, Any]:
    """The VAE's latent distribution (mean, std) for [-1, 1] pixels."""
    dist = m.vae.encode(pixels.to(m.device, dtype=m.vae.dtype)).latent_dist
    return dist.mean, dist.std


def scale_latents(m: Models, z: Any) -> Any:
    """(z - shift_factor) × scaling_factor, as the base's pipelines undo it."""
    shift = getattr(m.vae.config, "shift_factor", None) or 0.0
    return (z - shift) * m.vae.config.scaling_factor


def sample_latents(m: Models, batch: Batch, gen: Any) -> Any:
    """Draw latents from the distribution (as DiagonalGaussianDistribution.sample does) and scale."""
    import torch

    eps = torch.randn(batch.mean.shape, generator=gen, device=gen.device, dtype=batch.mean.dtype)
    return scale_latents(m, batch.mean + batch.std * eps.to(batch.mean.device))


def target_for(m: Models, latents: Any, noise: Any, timesteps: Any) -> Any:
    """What the UNet should predict under the scheduler's prediction_type."""
    kind = m.scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return m.scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"unknown prediction_type {kind!r}")


def snr_weights(m: Models, timesteps: Any, gamma: float) -> Any:
    """Min-SNR-γ loss weights: min(SNR, γ)/SNR for epsilon, min(SNR, γ)/(SNR+1) for v."""
    import torch
    from diffusers.training_utils import compute_snr

    snr = compute_snr(m.scheduler, timesteps)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    kind = m.scheduler.config.prediction_type
    if kind == "epsilon":
        return torch.where(snr > 0, clipped / snr.clamp_min(1e-12), torch.ones_like(snr))
    if kind == "v_prediction":
        return clipped / (snr + 1)
    return clipped


def predict(m: Models, noisy: Any, timesteps: Any, batch: Batch) -> Any:
    """One UNet call (with SDXL's added conditions)."""
    kwargs: dict[str, Any] = {}
    if m.is_sdxl:
        kwargs["added_cond_kwargs"] = {
            "text_embeds": batch.pooled.to(m.weight_dtype),
            "time_ids": batch.time_ids.to(m.device, dtype=m.weight_dtype),
        }
    hidden = batch.hidden.to(m.weight_dtype)
    return m.unet(noisy.to(m.weight_dtype), timesteps, hidden, return_dict=False, **kwargs)[0]


def training_loss(m: Models, cfg: TrainConfig, batch: Batch, gen: Any) -> Any:
    """The loss of one batch with random latents, noise and timesteps drawn from `gen`."""
    import torch
    import torch.nn.functional as F

    latents = sample_latents(m, batch, gen).float()
    bsz, channels = latents.shape[:2]
    noise = torch.randn(latents.shape, generator=gen, device=gen.device).to(latents.device)
    if cfg.noise_offset:
        offset = torch.randn((bsz, channels, 1, 1), generator=gen, device=gen.device)
        noise = noise + cfg.noise_offset * offset.to(latents.device)
    steps = m.scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (bsz,), generator=gen, device=gen.device).to(latents.device)
    noisy = m.scheduler.add_noise(latents, noise, timesteps)
    target = target_for(m, latents, noise, timesteps)
    pred = predict(m, noisy, timesteps, batch)
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if cfg.snr_gamma:
        loss = loss * snr_weights(m, timesteps, cfg.snr_gamma)
    return loss.mean()


def eval_loss(m: Models, latents: Any, captions: list[str], time_ids: Any) -> float:
    """Plain MSE at fixed timesteps and fixed noise: comparable before and after training."""
    import torch
    import torch.nn.functional as F

    steps = m.scheduler.config.num_train_timesteps
    timesteps = torch.linspace(steps * 0.05, steps * 0.95, EVAL_TIMESTEPS).long().to(m.device)
    gen = torch.Generator().manual_seed(EVAL_SEED)
    total = 0.0
    with torch.no_grad():
        for i in range(latents.shape[0]):
            lat = latents[i : i + 1].expand(EVAL_TIMESTEPS, -1, -1, -1)
            noise = torch.randn(lat.shape, generator=gen).to(m.device)
            hidden, pooled = encode_text(m, [captions[i]] * EVAL_TIMESTEPS)
            ids = None if time_ids is None else time_ids[i : i + 1].expand(EVAL_TIMESTEPS, -1)
            batch = Batch(lat, None, hidden, pooled, ids)
            noisy = m.scheduler.add_noise(lat, noise, timesteps)
            pred = predict(m, noisy, timesteps, batch)
            target = target_for(m, lat, noise, timesteps)
            total += F.mse_loss(pred.float(), target.float()).item()
    return total / max(1, latents.shape[0])


@contextlib.contextmanager
def adapters_off(m: Models) -> Iterator[None]:
    """Run the base as it was: every trained model's LoRA disabled, then enabled again."""
    for _, model in m.trained:
        model.disable_adapters()
    try:
        yield
    finally:
        for _, model in m.trained:
            model.enable_adapters()
