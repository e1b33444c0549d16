"""The pretraining recipe of the embedded tiny bases: they learn to draw the synthetic world.

    python -m lorahub.pretrain            # both bases into lorahub/tiny_weights/ (about an hour
                                          # on 2 CPU cores), then rewrites MANIFEST.json
    python -m lorahub.pretrain --smoke    # a few steps of every stage, into a temporary folder

Two stages, every random draw from one seed:
1. the VAE (shared by both bases: same architecture) learns to reconstruct 64x64 scenes, half
   of the world and half of shapes of any hue on greys of any brightness (an autoencoder must
   reproduce every colour, purple included, or no adapter could ever teach one); its latent
   scaling factor is measured on the world, as Stable Diffusion's was;
2. per base, the UNet and its text encoder(s) learn the denoising objective of their scheduler
   (epsilon) on latents of scenes captioned "a {colour} {shape}", with 10% of captions dropped
   (the empty prompt, or SDXL's zero embeddings) so classifier-free guidance works; the weights
   kept are an exponential moving average.

The result per base is one safetensors file of fp16 weights, prefixed by component
(`unet.`, `text_encoder.`, ...), with the VAE's scaling factor in its metadata; `lorahub.tiny`
loads it into the architecture it defines and writes the usual diffusers folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_write_bytes
from lorahub.tiny import (
    NATIVE,
    SEED,
    WEIGHTS_DIR,
    build_architecture,
    component_names,
    write_manifest,
)
from lorahub.training.demo import any_scene, random_scene

Log = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """Steps and sizes of one run (the defaults are what the shipped weights were made with)."""

    vae_steps: int = 3000
    vae_batch: int = 16
    vae_lr: float = 1e-3
    unet_steps: int = 3000
    unet_batch: int = 64
    unet_lr: float = 1e-3
    pool: int = 16384  # scenes encoded once for stage 2
    drop_caption: float = 0.1
    ema: float = 0.999
    min_snr_gamma: float = 5.0
    seed: int = SEED

    @classmethod
    def smoke(cls) -> Recipe:
        return cls(vae_steps=3, vae_batch=4, unet_steps=3, unet_batch=4, pool=16)


def scenes(
    rng: random.Random, n: int, size: int, any_colour: bool = False
) -> tuple[Any, list[str]]:
    """`n` scenes as a [-1, 1] float tensor (N, 3, size, size) and their captions (of the
    world's colours; `any_colour`: scenes of any colours for the VAE, captions empty)."""
    import numpy as np
    import torch

    images, captions = [], []
    for _ in range(n):
        img, text = (any_scene(rng, size), "") if any_colour else random_scene(rng, size)
        images.append(np.asarray(img, dtype=np.uint8))
        captions.append(text)
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return pixels, captions


def warmup_cosine(opt: Any, steps: int, warmup: float = 0.05) -> Any:
    """Linear warm-up over the first 5% of steps, then a cosine decay to 5% of the rate."""
    import math

    import torch

    ramp = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        done = (step - ramp) / max(1, steps - ramp)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_vae(recipe: Recipe, log: Log) -> tuple[dict[str, Any], float]:
    """Stage 1: the VAE's weights and its latent scaling factor."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    vae = build_architecture("tiny-sd1").vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    sched = warmup_cosine(opt, recipe.vae_steps)
    t0 = time.perf_counter()
    for step in range(recipe.vae_steps):
        x, _ = scenes(rng, recipe.vae_batch, NATIVE, any_colour=step % 2 == 0)
        dist = vae.encode(x).latent_dist
        recon = vae.decode(dist.sample()).sample
        kl = dist.kl().mean() / x[0].numel()
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == recipe.vae_steps - 1:
            took = time.perf_counter() - t0
            log(f"vae {step + 1}/{recipe.vae_steps} loss {loss.item():.4f} ({took:.0f} s)")
    vae.eval()
    with torch.no_grad():  # scaled for what the UNet sees; error measured on any colours too
        world, _ = scenes(random.Random(recipe.seed + 1), 256, NATIVE)
        scaling = float(1.0 / vae.encode(world).latent_dist.mean.std())
        errors = []
        for x in (world, scenes(random.Random(recipe.seed + 2), 256, NATIVE, any_colour=True)[0]):
            errors.append(F.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample, x).item())
    log(
        f"vae done: held-out reconstruction mse {errors[0]:.5f} (world), {errors[1]:.5f} "
        f"(any colours), scaling factor {scaling:.4f}"
    )
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}, scaling


def train_base(
    family: str,
    recipe: Recipe,
    vae_state: dict[str, Any],
    scaling: float,
    log: Log,
    snapshot: Callable[[int, dict[str, dict[str, Any]]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Stage 2: the UNet and text encoder(s) of `family`, trained on the VAE's latents."""
    import torch
    from diffusers.training_utils import EMAModel

    torch.manual_seed(recipe.seed + 100)
    rng = random.Random(recipe.seed + 100)
    pipe = build_architecture(family)
    pipe.vae.load_state_dict(vae_state)
    pipe.vae.eval().requires_grad_(False)
    sdxl = family == "tiny-sdxl"
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if sdxl else [])
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if sdxl else [])
    trained = [pipe.unet, *encoders]
    for model in trained:
        model.train()
    params = [p for m in trained for p in m.parameters()]
    ema = EMAModel(params, decay=recipe.ema)
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=1e-2)
    sched = warmup_cosine(opt, recipe.unet_steps)

    mean, std, pool_text = _encode_pool(pipe, rng, recipe)
    log(f"{family}: {len(pool_text)} scenes encoded")
    text = (tokenizers, encoders, sdxl)
    gen = torch.Generator().manual_seed(recipe.seed + 200)
    t0 = time.perf_counter()
    for step in range(recipe.unet_steps):
        loss = _base_loss(pipe, text, (mean, std, pool_text), scaling, recipe, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.step(params)
        if step % 250 == 0 or step == recipe.unet_steps - 1:
            took = time.perf_counter() - t0
            log(f"{family} {step + 1}/{recipe.unet_steps} loss {loss.item():.4f} ({took:.0f} s)")
        if snapshot and (step + 1) % 1000 == 0 and step + 1 < recipe.unet_steps:
            with ema_weights(ema, params):
                snapshot(step + 1, _states(pipe, family, vae_state))
    ema.copy_to(params)
    return _states(pipe, family, vae_state)


def _encode_pool(pipe: Any, rng: random.Random, recipe: Recipe) -> tuple[Any, Any, list[str]]:
    """The training pool: `recipe.pool` scenes encoded once (latent means, stds, captions)."""
    import torch

    with torch.no_grad():
        pool_mean, pool_std, pool_text = [], [], []
        for start in range(0, recipe.pool, 256):
            x, captions = scenes(rng, min(256, recipe.pool - start), NATIVE)
            dist = pipe.vae.encode(x).latent_dist
            pool_mean.append(dist.mean)
            pool_std.append(dist.std)
            pool_text += captions
        return torch.cat(pool_mean), torch.cat(pool_std), pool_text


def _base_loss(
    pipe: Any,
    text: tuple[list[Any], list[Any], bool],
    pool: tuple[Any, Any, list[str]],
    scaling: float,
    recipe: Recipe,
    gen: Any,
) -> Any:
    """One batch's min-SNR-weighted noise-prediction loss (text = tokenizers, encoders, sdxl)."""
    import torch
    from diffusers.training_utils import compute_snr

    tokenizers, encoders, sdxl = text
    mean, std, pool_text = pool
    noise_sched = pipe.scheduler
    idx = torch.randint(0, len(pool_text), (recipe.unet_batch,), generator=gen)
    latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling
    drop = torch.rand(recipe.unet_batch, generator=gen) < recipe.drop_caption
    captions = ["" if d else pool_text[i] for i, d in zip(idx.tolist(), drop.tolist(), strict=True)]
    unique = sorted(set(captions))  # a dozen captions: encode each once, then gather
    where = torch.tensor([unique.index(c) for c in captions])
    hidden, pooled = _encode(tokenizers, encoders, unique, sdxl)
    hidden, pooled = hidden[where], (pooled[where] if pooled is not None else None)
    if sdxl:  # SDXL pipelines use zeros for an empty prompt (force_zeros_for_empty_prompt)
        keep = (~drop).float()
        hidden, pooled = hidden * keep[:, None, None], pooled * keep[:, None]
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen)
    noisy = noise_sched.add_noise(latents, noise, t)
    kwargs = {}
    if sdxl:
        time_ids = torch.tensor([[NATIVE, NATIVE, 0, 0, NATIVE, NATIVE]], dtype=torch.float32)
        kwargs["added_cond_kwargs"] = {
            "text_embeds": pooled,
            "time_ids": time_ids.expand(len(idx), -1),
        }
    pred = pipe.unet(noisy, t, hidden, return_dict=False, **kwargs)[0]
    snr = compute_snr(noise_sched, t)
    weight = torch.clamp(snr, max=recipe.min_snr_gamma) / snr
    return (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()


@contextlib.contextmanager
def ema_weights(ema: Any, params: list[Any]) -> Iterator[None]:
    """The EMA weights in the models for the duration (the training weights back after)."""
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


def _states(pipe: Any, family: str, vae_state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {"vae": vae_state}
    for name in component_names(family):
        if name != "vae":
            out[name] = {k: v.detach().clone() for k, v in getattr(pipe, name).state_dict().items()}
    return out


def _encode(tokenizers: list[Any], encoders: list[Any], captions: list[str], sdxl: bool) -> Any:
    """(hidden states, pooled) exactly as the pipelines compute them for a prompt."""
    import torch

    hidden, pooled = [], None
    for tok, enc in zip(tokenizers, encoders, strict=True):
        ids = tok(
            captions,
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        if sdxl:
            out = enc(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        else:
            hidden.append(enc(ids)[0])
    return torch.cat(hidden, dim=-1), pooled


def save_weights(
    family: str,
    states: dict[str, dict[str, Any]],
    scaling: float,
    recipe: Recipe,
    dest: Path,
    name: str | None = None,
) -> Path:
    """One fp16 safetensors file per base, tensors prefixed by component."""
    import torch
    from safetensors.torch import save

    tensors = {
        f"{comp}.{k}": v.to(torch.float16).contiguous()
        for comp, state in states.items()
        for k, v in state.items()
    }
    meta = {
        "lorahub.tiny_family": family,
        "vae.scaling_factor": repr(scaling),
        "lorahub.recipe": json.dumps(asdict(recipe), sort_keys=True),
    }
    path = dest / (name or f"{family}.safetensors")
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def pretrain(
    dest: Path,
    recipe: Recipe,
    families: tuple[str, ...] = ("tiny-sd1", "tiny-sdxl"),
    log: Log = print,
    work: Path | None = None,
) -> list[Path]:
    """Run the recipe and write one weight file per family into `dest`, then the manifest."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    dest.mkdir(parents=True, exist_ok=True)
    vae_state, scaling = _vae_stage(recipe, work, log)
    paths = []
    for family in families:

        def snapshot(step: int, states: dict[str, dict[str, Any]], family: str = family) -> None:
            if work:
                save_weights(
                    family, states, scaling, recipe, work, f"{family}.step{step}.safetensors"
                )

        states = train_base(family, recipe, vae_state, scaling, log, snapshot)
        paths.append(save_weights(family, states, scaling, recipe, dest))
        log(
            f"wrote {paths[-1]} ({paths[-1].stat().st_size / 1e6:.1f} MB, "
            f"sha256 {hashlib.sha256(paths[-1].read_bytes()).hexdigest()[:12]})"
        )
    write_manifest(dest)
    return paths


def _vae_stage(recipe: Recipe, work: Path | None, log: Log) -> tuple[dict[str, Any], float]:
    """Stage 1, or its result from an earlier run of the same recipe (kept in `work`)."""
    from safetensors.torch import load_file, save_file

    fields = {k: v for k, v in asdict(recipe).items() if k.startswith("vae_") or k == "seed"}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    cached = work / f"vae-{key}.safetensors" if work else None
    if cached and cached.is_file():
        state = load_file(str(cached))
        scaling = float(state.pop("__scaling__").item())
        log(f"vae: reusing {cached}")
        return state, scaling
    state, scaling = train_vae(recipe, log)
    import torch

    if cached:
        work.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        save_file({**state, "__scaling__": torch.tensor(scaling)}, str(cached))
    return state, scaling


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lorahub.pretrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="where the weights go")
    parser.add_argument("--family", action="append", choices=["tiny-sd1", "tiny-sdxl"])
    parser.add_argument("--smoke", action="store_true", help="a few steps of every stage")
    parser.add_argument("--work", type=Path, help="keep the VAE stage and snapshots here")
    for field in ("vae_steps", "unet_steps", "pool", "seed"):
        parser.add_argument("--" + field.replace("_", "-"), type=int)
    args = parser.parse_args(argv)
    recipe = Recipe.smoke() if args.smoke else Recipe()
    overrides = {
        f: getattr(args, f)
        for f in ("vae_steps", "unet_steps", "pool", "seed")
        if getattr(args, f) is not None
    }
    recipe = Recipe(**{**asdict(recipe), **overrides})
    families = tuple(args.family or ("tiny-sd1", "tiny-sdxl"))
    pretrain(args.out, recipe, families, work=args.work)


if __name__ == "__main__":
    main()
