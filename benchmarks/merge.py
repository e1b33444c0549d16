"""Benchmark: lorahub's svd/cat merge vs peft's `add_weighted_adapter` on the SD 1.5 UNet.

Two independent rank-16 LoRAs (attention, proj_in/out, feed-forward) on the full SD 1.5 UNet
architecture, built from its config with uninitialised weights (no download). Measures wall time,
extra peak memory (VmHWM, reset via /proc/self/clear_refs) and the relative error
‖ΔW_merged − Σwᵢ·ΔWᵢ‖ / ‖Σwᵢ·ΔWᵢ‖ of each method, in one run.

    python benchmarks/merge.py            # full SD 1.5 UNet
    python benchmarks/merge.py --smoke    # a small UNet, seconds
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lorahub.fullsize import SD15_UNET

SMOKE_UNET = {
    **SD15_UNET,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "norm_num_groups": 16,
}
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
RANK, WEIGHTS = 16, (0.7, 0.4)


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def measure(fn: Any) -> tuple[Any, float, float]:
    """(result, seconds, extra peak RSS in MiB above the RSS at the start)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = rss_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, (rss_kb("VmHWM") - before) / 1024


def build_unet(config: dict) -> Any:
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        unet = UNet2DConditionModel(**config)
    return unet.to_empty(device="cpu").eval()


def random_adapters(unet: Any, folder: Path) -> tuple[list[Path], dict[str, list[tuple[Any, Any]]]]:
    """Two independent rank-16 LoRAs as diffusers files, and their factors by module path."""
    from lorahub.formats import write_adapter
    from lorahub.formats.tensors import ModuleWeights

    paths = [
        n
        for n, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear) and n.endswith(tuple(TARGETS))
    ]
    factors: dict[str, list[tuple[Any, Any]]] = {p: [] for p in paths}
    files = []
    for i in range(2):
        gen = torch.Generator().manual_seed(100 + i)
        mods = []
        for p in paths:
            layer = unet.get_submodule(p)
            down = torch.randn(RANK, layer.in_features, generator=gen) / math.sqrt(
                layer.in_features
            )
            up = torch.randn(layer.out_features, RANK, generator=gen) * 0.01
            factors[p].append((up, down))
            mods.append(
                (f"unet.{p}", ModuleWeights(kind="lora", down=down, up=up, alpha=float(RANK)))
            )
        files.append(write_adapter(mods, folder / f"a{i}.safetensors", format="diffusers"))
    return files, factors


def target(factors: list[tuple[Any, Any]]) -> Any:
    return sum(
        w * (up.double() @ down.double()) for w, (up, down) in zip(WEIGHTS, factors, strict=True)
    )


def peft_error(model: Any, name: str, factors: dict[str, list[tuple[Any, Any]]]) -> float:
    """Overall relative error of peft's merged adapter `name`, computed densely."""
    err = tgt = 0.0
    for p, fs in factors.items():
        t = target(fs)
        layer = model.base_model.model.get_submodule(p)
        err += float((layer.get_delta_weight(name).double() - t).norm()) ** 2
        tgt += float(t.norm()) ** 2
    return math.sqrt(err / tgt)


def peft_model(unet: Any, factors: dict[str, list[tuple[Any, Any]]]) -> Any:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS)
    model = get_peft_model(unet, cfg, adapter_name="a0")
    model.add_adapter("a1", cfg)
    with torch.no_grad():
        for p, fs in factors.items():
            layer = model.base_model.model.get_submodule(p)
            for i, (up, down) in enumerate(fs):
                layer.lora_A[f"a{i}"].weight.copy_(down)
                layer.lora_B[f"a{i}"].weight.copy_(up)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small UNet (seconds)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for both sides (busy CPUs: 1)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from lorahub.ops.inputs import spec_from_file
    from lorahub.ops.merge import MergeOptions, merge_adapters

    unet = build_unet(SMOKE_UNET if args.smoke else SD15_UNET)
    folder = Path(tempfile.mkdtemp(prefix="lorahub-bench-"))
    files, factors = random_adapters(unet, folder)
    biggest = (
        max(up.shape[0] * down.shape[1] for fs in factors.values() for up, down in fs) * 4 / 2**20
    )
    print(
        f"{len(factors)} modules x 2 adapters, rank {RANK}; largest module ΔW (fp32): {biggest:.1f} MiB"
    )
    specs = [spec_from_file(f, w) for f, w in zip(files, WEIGHTS, strict=True)]
    merge_adapters(
        specs, folder / "warm-up.safetensors", MergeOptions("svd", rank=RANK)
    )  # imports, caches
    ours = {}
    for method in ("svd", "cat"):
        opts = MergeOptions(method, rank=RANK if method == "svd" else None)
        dest = folder / f"ours-{method}.safetensors"
        report, secs, mem = measure(lambda o=opts, d=dest: merge_adapters(specs, d, o))
        ours[method] = (secs, mem, report.overall_error, dest.stat().st_size / 2**20)
    model = peft_model(unet, factors)
    theirs = {}
    for method in ("svd", "cat", "linear"):
        _, secs, mem = measure(
            lambda m=method: model.add_weighted_adapter(
                ["a0", "a1"],
                list(WEIGHTS),
                f"m-{m}",
                combination_type=m,
                svd_rank=RANK if m == "svd" else None,
            )
        )
        theirs[method] = (secs, mem, peft_error(model, f"m-{method}", factors))
    print(
        f"{'method':<8}{'ours s':>9}{'peft s':>9}{'speed-up':>10}{'ours MiB':>10}{'peft MiB':>10}{'ours err':>11}{'peft err':>11}"
    )
    for method in ("svd", "cat", "linear"):
        p = theirs[method]
        o = ours.get(method)
        if o:
            print(
                f"{method:<8}{o[0]:>9.3f}{p[0]:>9.3f}{p[0] / o[0]:>9.1f}x{o[1]:>10.1f}{p[1]:>10.1f}{o[2]:>11.4f}{p[2]:>11.4f}"
            )
        else:
            print(
                f"{method:<8}{'-':>9}{p[0]:>9.3f}{'-':>10}{'-':>10}{p[1]:>10.1f}{'-':>11}{p[2]:>11.4f}"
            )
    print(
        f"ours (file in -> file out, includes reading and writing): svd output {ours['svd'][3]:.1f} MiB, cat output {ours['cat'][3]:.1f} MiB"
    )
    print(
        f"svd speed-up {theirs['svd'][0] / ours['svd'][0]:.1f}x (aim >= 20x); error ours {ours['svd'][2]:.4f} vs peft {theirs['svd'][2]:.4f} (aim: no larger)"
    )


if __name__ == "__main__":
    main()
