"""Heterogeneous-adapter batching: images/s for 8 requests, one by one against one shared loop.

In one run, per base: 8 requests one by one (the engine without batching), the 8 batched with one
shared adapter set, and the 8 batched with 8 different sets (each request its own LoRA). Bases:
the tiny base, and an SD 1.5-shaped UNet at 256 px (random weights from its config, with a
CLIP-L-shaped text encoder and the tiny VAE; nothing downloaded). Then a per-layer comparison of
the two ways to add per-row terms: segment by set (views of each set's rows, what the engine does)
and a padded gather + `torch.bmm` (Punica's way). `--smoke`: the tiny base only, seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lorahub.inference import Engine, GenerationRequest, batched  # noqa: E402
from lorahub.types import AdapterSpec  # noqa: E402

TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.2")
REQUESTS = 8


def write_lora(unet, path: Path, rank: int, seed: int) -> AdapterSpec:
    """A random diffusers-format UNet LoRA on the attention and projection layers."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in unet.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.endswith(TARGETS):
            sd[f"unet.{name}.lora_A.weight"] = torch.randn(rank, mod.in_features, generator=gen)
            sd[f"unet.{name}.lora_B.weight"] = (
                torch.randn(mod.out_features, rank, generator=gen) * 0.01
            )
    save_file(sd, str(path))
    return AdapterSpec(name=path.stem, path=str(path), key=f"{path}:{seed}")


def sd15_pipeline(device: str, dtype: str | None):
    """The tiny pipeline with an SD 1.5-shaped UNet and a CLIP-L-shaped text encoder."""
    from diffusers import StableDiffusionPipeline

    from lorahub.fullsize import clip_l_text_encoder, sd15_unet
    from lorahub.models import load_pipeline, pick_dtype

    tiny = load_pipeline("tiny", device="cpu", dtype="fp32")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=tiny.vae, text_encoder=clip_l_text_encoder(), tokenizer=tiny.tokenizer,
        unet=sd15_unet(), scheduler=tiny.scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, pick_dtype(device, dtype))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def segmented(engine: Engine, requests: list[GenerationRequest]) -> None:
    """A batch whose Linear layers add per-row terms segment by segment, not with bmm."""
    batched.STACK = False
    try:
        engine.generate_batch(requests)
    finally:
        batched.STACK = True


def bench_base(label: str, engine: Engine, unet, size: int, steps: int, reps: int) -> dict:
    """Images/s of the three ways for one base; the best of `reps` runs each."""
    with tempfile.TemporaryDirectory() as tmp:
        specs = [write_lora(unet, Path(tmp) / f"lora{i}.safetensors", 8, i) for i in range(8)]

        def req(i: int, spec: AdapterSpec) -> GenerationRequest:
            return GenerationRequest(
                f"a red circle {i}", adapters=(spec,), steps=steps, seed=i, width=size, height=size
            )

        shared = [req(i, specs[0]) for i in range(REQUESTS)]
        different = [req(i, specs[i]) for i in range(REQUESTS)]
        engine.generate_batch(different)  # warm-up: every adapter resident, kernels warm
        for r in different[:2]:
            engine.generate(r)
        ways = {
            "one by one": lambda: [engine.generate(r) for r in different],
            "batched, one shared set": lambda: engine.generate_batch(shared),
            "batched, 8 different sets": lambda: engine.generate_batch(different),
            "  (segments instead of bmm)": lambda: segmented(engine, different),
        }
        times = dict.fromkeys(ways, float("inf"))
        for _ in range(reps):  # interleaved: a busy machine slows every way alike
            for k, fn in ways.items():
                times[k] = min(times[k], timed(fn))
    rates = {k: REQUESTS / v for k, v in times.items()}
    print(f"\n{label}: {REQUESTS} requests, {size} px, {steps} steps, rank-8 LoRAs")
    for k, v in rates.items():
        print(f"  {k:28s} {v:8.2f} images/s  ({times[k]:.3f} s)")
    hetero = rates["batched, 8 different sets"]
    print(
        f"  different sets / shared set: {hetero / rates['batched, one shared set']:.2f}x (aim >= 0.9)"
    )
    print(
        f"  different sets / one by one: {hetero / rates['one by one']:.2f}x (aim >= 1.5, tiny base)"
    )
    return rates


def bench_layer(rows: int, tokens: int, width: int, rank: int, sets: int, reps: int) -> None:
    """Per-row LoRA terms on one Linear: segment by set (views) against gather + bmm."""
    from lorahub.inference import layers
    from lorahub.inference.batched import spans_of

    torch.manual_seed(0)
    layer = layers.install(torch.nn.Linear(width, width), "bench")
    x = torch.randn(rows, tokens, width)
    downs = torch.randn(sets, rank, width) * 0.1
    ups = torch.randn(sets, width, rank) * 0.1
    per = rows // sets
    groups = tuple(
        (spans_of(list(range(s * per, (s + 1) * per))), ((downs[s], ups[s], 0.5, None),), ())
        for s in range(sets)
    )
    index = torch.arange(rows) // per

    def segment():
        layer.lora_rows = {rows: groups}
        with torch.inference_mode():
            layer(x)

    def bmm():
        with torch.inference_mode():
            out = torch.nn.functional.linear(x, layer.weight, layer.bias)
            hidden = torch.bmm(x, downs[index].transpose(1, 2))
            out.baddbmm_(hidden, ups[index].transpose(1, 2), alpha=0.5)

    def plain():
        layer.lora_rows = {}
        with torch.inference_mode():
            torch.nn.functional.linear(x, layer.weight, layer.bias)

    best = {f.__name__: min(timed(f) for _ in range(reps)) for f in (plain, segment, bmm, segment)}
    extra = {k: (best[k] - best["plain"]) * 1000 for k in ("segment", "bmm")}
    print(
        f"  layer {width}x{width}, {rows} rows x {tokens} tokens, {sets} sets, rank {rank}: plain "
        f"{best['plain'] * 1000:.2f} ms; LoRA terms add segment {extra['segment']:.2f} ms, "
        f"bmm {extra['bmm']:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny base only, a few seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32 (CPU default), fp16 on CUDA")
    args = parser.parse_args()
    os.environ.setdefault("LORAHUB_CACHE", tempfile.mkdtemp(prefix="lorahub-bench-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    with Engine(base="tiny", device=args.device, dtype=args.dtype) as engine:
        unet = engine.runtime().pipe.unet
        size, steps = (32, 2) if args.smoke else (64, 10)
        bench_base("tiny base", engine, unet, size, steps, 1 if args.smoke else 3)
    if not args.smoke:
        pipe = sd15_pipeline(args.device, args.dtype)
        loader = lambda *a, **k: pipe  # noqa: E731
        with Engine(
            base="sd15-shape", device=args.device, dtype=args.dtype, pipe_loader=loader
        ) as engine:
            bench_base("SD 1.5-shaped UNet", engine, pipe.unet, 256, 2, 1)
    print("\nper-row terms on one layer (CPU):")
    if args.smoke:
        bench_layer(rows=8, tokens=64, width=64, rank=4, sets=4, reps=3)
    else:
        bench_layer(rows=16, tokens=1024, width=320, rank=8, sets=8, reps=5)
        bench_layer(rows=16, tokens=64, width=1280, rank=8, sets=8, reps=5)


if __name__ == "__main__":
    main()
