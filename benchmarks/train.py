"""Trainer throughput and memory: lorahub's `train()` against a plain diffusers + peft loop.

    python benchmarks/train.py            # ~2-3 min on 2 CPU cores: a bigger-than-tiny UNet
    python benchmarks/train.py --smoke    # ~20 s: the tiny base, a few steps

Same base, data, batch, resolution, LoRA and number of steps for every variant:
  plain        the loop people copy: DataLoader, VAE + text encoder every step, peft LoRA, AdamW
  ours         lorahub.training.train, no caching
  ours-cached  lorahub.training.train --cache-latents (several epochs over the same images)
The full run gives each variant its own process (so its peak RSS is its own); --smoke runs all
three in one process and resets the peak between them (Linux VmHWM). steps/s is measured over
the steps after the first (warm-up), from per-step timestamps; peak memory is peak RSS, and on
CUDA also torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
VARIANTS = ("plain", "ours", "ours-cached")


def build_bench_base(dest: Path) -> Path:
    """The tiny SD1 pipeline with a wider, deeper UNet (so the UNet, not Python, dominates)."""
    import torch
    from diffusers import UNet2DConditionModel

    from lorahub.models import load_pipeline

    if (dest / "model_index.json").exists():
        return dest
    pipe = load_pipeline("tiny", device="cpu", dtype="fp32")
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    pipe.register_modules(unet=pipe.unet)
    pipe.save_pretrained(dest, safe_serialization=True)
    return dest


def reset_peak() -> None:
    """Reset this process's peak RSS (Linux: VmHWM) and CUDA peak, so a variant measures its own."""
    import ctypes
    import gc

    import torch

    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float]:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        hwm = next((ln for ln in fh if ln.startswith("VmHWM:")), None)
        if hwm:
            out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def rate(stamps: list[float]) -> float:
    """Steps per second over every step after the first."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")


def run_ours(args: argparse.Namespace, cached: bool) -> dict[str, float]:
    from lorahub.training import TrainConfig, train

    stamps: list[float] = []
    cfg = TrainConfig(
        data=args.data, base=args.base, name="bench", output_dir=tempfile.mkdtemp(), resolution=args.resolution,
        rank=4, target_modules=tuple(TARGETS), learning_rate=1e-4, max_train_steps=args.steps,
        batch_size=args.batch, cache_latents=cached, register=False, validation_prompts=("a red circle",),
        validation_inference_steps=1, seed=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    train(cfg, progress=lambda n=1, total=None, status=None: stamps.append(time.perf_counter()))
    return {"steps_per_s": rate(stamps), "wall_s": time.perf_counter() - t0, **peak_memory()}


def run_plain(args: argparse.Namespace) -> dict[str, float]:
    """The straightforward loop (as in diffusers' train_text_to_image_lora example)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    from lorahub.tiny import resolve_base

    base = resolve_base(args.base)
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder").requires_grad_(
        False
    )
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae").requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet").requires_grad_(False)
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=TARGETS)
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    files = sorted(Path(args.data).glob("*.png"))

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            img = (
                Image.open(files[i])
                .convert("RGB")
                .resize((args.resolution, args.resolution), Image.BICUBIC)
            )
            pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(
                2, 0, 1
            )
            ids = tokenizer(files[i].with_suffix(".txt").read_text(), padding="max_length",
                            max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids[0]  # fmt: skip
            return {"pixel_values": pixels, "input_ids": ids}

    loader = torch.utils.data.DataLoader(
        Images(), batch_size=args.batch, shuffle=True, drop_last=True
    )
    stamps, step, t0 = [], 0, time.perf_counter()
    unet.train()
    while step < args.steps:
        for batch in loader:
            latents = (
                vae.encode(batch["pixel_values"]).latent_dist.sample() * vae.config.scaling_factor
            )
            noise = torch.randn_like(latents)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],)).long()
            noisy = scheduler.add_noise(latents, noise, t)
            hidden = text_encoder(batch["input_ids"])[0]
            pred = unet(noisy, t, hidden).sample
            loss = F.mse_loss(pred.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            stamps.append(time.perf_counter())
            if step >= args.steps:
                break
    return {"steps_per_s": rate(stamps), "wall_s": time.perf_counter() - t0, **peak_memory()}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from lorahub.models import quiet_diffusers

    quiet_diffusers()
    variants = VARIANTS if args.worker == "all" else (args.worker,)
    results = {}
    for variant in variants:
        reset_peak()
        results[variant] = (
            run_plain(args) if variant == "plain" else run_ours(args, variant == "ours-cached")
        )
    print("RESULT " + json.dumps(results))


def spawn(
    variant: str, args: argparse.Namespace, base: str, data: str
) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, __file__, "--worker", variant, "--base", base, "--data", data,
           "--steps", str(args.steps), "--batch", str(args.batch), "--resolution", str(args.resolution),
           "--threads", str(args.threads)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny base, few steps (~20 s)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (default 1)"
    )
    parser.add_argument("--worker", choices=[*VARIANTS, "all"], help=argparse.SUPPRESS)
    parser.add_argument("--base", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    args.steps = args.steps or (8 if args.smoke else 36)
    args.resolution = args.resolution or (64 if args.smoke else 128)
    os.environ.setdefault("LORAHUB_HOME", tempfile.mkdtemp(prefix="lorahub-bench-home-"))
    from lorahub.training import demo_dataset

    work = Path(tempfile.mkdtemp(prefix="lorahub-bench-"))
    data = str(demo_dataset(work / "data", count=24, size=args.resolution))
    base = (
        "tiny"
        if args.smoke
        else str(build_bench_base(Path(tempfile.gettempdir()) / "lorahub-bench-unet-v1"))
    )
    epochs = args.steps * args.batch / 24
    print(f"base={'tiny' if args.smoke else 'tiny+wide UNet'} res={args.resolution} batch={args.batch} "
          f"steps={args.steps} (~{epochs:.1f} epochs) threads={args.threads}")  # fmt: skip
    if args.smoke:  # one process for speed; peaks are reset between variants (Linux VmHWM)
        results = spawn("all", args, base, data)
    else:  # one process per variant: each peak RSS is its own
        results = {v: spawn(v, args, base, data)[v] for v in VARIANTS}
    print(f"{'variant':<12} {'steps/s':>8} {'wall s':>7} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:<12} {r['steps_per_s']:>8.2f} {r['wall_s']:>7.1f} {r['peak_rss_mb']:>12.0f}"
              + (f"  cuda peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else ""))  # fmt: skip
    plain = results["plain"]
    for name in ("ours", "ours-cached"):
        r = results[name]
        print(f"ratio {name}/plain: speed x{r['steps_per_s'] / plain['steps_per_s']:.2f}, "
              f"peak RSS x{r['peak_rss_mb'] / plain['peak_rss_mb']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
