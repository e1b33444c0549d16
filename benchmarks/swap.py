"""Adapter swap benchmark: plain diffusers/peft against the lorahub engine, on the SD 1.5 UNet.

The UNet is built from its config with random weights (no download). Run `python
benchmarks/swap.py` for the full SD 1.5 architecture, `--smoke` for the tiny UNet (< 30 s).
Prints every number, then the ratio against each aim of issue 5.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lorahub.fullsize import SD15_UNET  # noqa: E402
from lorahub.inference.activate import Activator, Selection  # noqa: E402
from lorahub.inference.adapters import BufferPool, CpuCache, ModuleIndex, ResidentCache  # noqa: E402
from lorahub.inference.fuse import Fuser  # noqa: E402
from lorahub.metrics import EngineMetrics  # noqa: E402
from lorahub.types import AdapterSpec  # noqa: E402

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def ms(seconds: float) -> float:
    return seconds * 1000


def alternating(fn, options: list):
    """A no-argument callable that calls `fn` with the options in turn."""
    state = {"i": 0}

    def call():
        fn(options[state["i"] % len(options)])
        state["i"] += 1

    return call


def timeit(fn, n: int) -> list[float]:
    """Wall seconds of `n` calls."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def build_unet(smoke: bool):
    from diffusers import UNet2DConditionModel

    if smoke:
        from lorahub.tiny import ensure_tiny

        return UNet2DConditionModel.from_pretrained(ensure_tiny("tiny"), subfolder="unet").eval()
    torch.manual_seed(0)
    return UNet2DConditionModel(**SD15_UNET).eval()


def write_lora(unet, path: Path, rank: int, seed: int) -> Path:
    """A random diffusers-format LoRA (attention projections, alpha = rank)."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in unet.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.endswith(TARGETS) and ".attn" in name:
            sd[f"unet.{name}.lora_A.weight"] = (
                torch.randn(rank, mod.in_features, generator=gen) * 0.01
            )
            sd[f"unet.{name}.lora_B.weight"] = (
                torch.randn(mod.out_features, rank, generator=gen) * 0.01
            )
    save_file(sd, str(path))
    return path


def bench_diffusers(unet, files: dict, reps: int) -> dict:
    """Plain reload, set_adapters, hotswap=True (peft's own layers)."""
    a, b = str(files[(16, 0)]), str(files[(16, 1)])
    res = {}

    def reload(path):
        unet.unload_lora()
        unet.load_lora_adapter(path, prefix="unet", adapter_name="x")

    reload(a)
    res["plain_reload"] = statistics.median(timeit(alternating(reload, [b, a]), reps))
    unet.unload_lora()
    unet.load_lora_adapter(a, prefix="unet", adapter_name="a")
    unet.load_lora_adapter(b, prefix="unet", adapter_name="b")
    res["set_adapters"] = statistics.median(
        timeit(alternating(unet.set_adapters, ["a", "b"]), reps * 5)
    )
    unet.unload_lora()
    unet.enable_lora_hotswap(target_rank=64)
    unet.load_lora_adapter(a, prefix="unet", adapter_name="default_0")

    def hot(path):
        unet.load_lora_adapter(path, prefix="unet", adapter_name="default_0", hotswap=True)

    res["hotswap"] = statistics.median(timeit(alternating(hot, [b, a]), reps))
    unet.unload_lora()
    unet.peft_config = {}
    gc.collect()
    return res


class Ours:
    """The engine's adapter machinery on a bare UNet (what BaseRuntime._switch runs)."""

    def __init__(self, unet, max_count: int = 32, cpu_bytes: int = 8 << 30):
        self.metrics = EngineMetrics()
        self.cpu = CpuCache(cpu_bytes, torch.float32, self.metrics)
        self.act = Activator()
        self.resident = ResidentCache(
            ModuleIndex(SimpleNamespace(unet=unet)), self.cpu, BufferPool("cpu", 4 << 30), self.metrics,
            max_count=max_count, max_bytes=8 << 30, on_evict=self.act.forget,
        )  # fmt: skip

    def switch(self, specs: list[AdapterSpec]) -> None:
        adapters = self.resident.acquire(specs)
        self.act.activate([Selection(a, s.weight) for s, a in zip(specs, adapters, strict=True)])
        self.resident.release(adapters)


def spec_for(path: Path, weight: float = 1.0) -> AdapterSpec:
    return AdapterSpec(path.stem, str(path), str(path), weight=weight)


def bench_ours(unet, files: dict, reps: int, ranks: tuple[int, ...]) -> dict:
    res: dict = {}
    ours = Ours(unet)
    a, b = spec_for(files[(16, 0)]), spec_for(files[(16, 1)])
    ours.switch([a])
    ours.switch([b])
    gc.collect()
    gc.freeze()
    swaps = timeit(alternating(ours.switch, [[a], [b]]), 200)
    res["resident_switch"] = statistics.median(swaps)
    res["p99_over_median"] = sorted(swaps)[int(0.99 * len(swaps)) - 1] / res["resident_switch"]
    for rank in ranks:
        res[f"cpu_load_r{rank}"], res[f"cold_load_r{rank}"], res[f"floor_r{rank}"] = _loads(
            unet, files, rank, reps
        )
    res.update(_resident_scaling(unet, files, reps))
    return res


def _loads(unet, files: dict, rank: int, reps: int) -> tuple[float, float, float]:
    """(CPU-tier load, cold load from disk, copy floor) for one adapter of `rank`."""
    ours = Ours(unet, max_count=1)
    a, b = spec_for(files[(rank, 0)]), spec_for(files[(rank, 1)])
    ours.switch([a])
    ours.switch([b])
    src = [t for term in ours.cpu.items[a.key].terms for t in (term.a, term.b)]
    dst = [torch.empty_like(t) for t in src]
    floor = statistics.median(
        timeit(lambda: [d.copy_(s) for d, s in zip(dst, src, strict=True)], reps * 3)
    )
    load = alternating(lambda s: ours.resident.release(ours.resident.acquire([s])), [a, b])
    cpu_load = statistics.median(timeit(load, reps * 3))

    def cold():
        ours.cpu.clear()
        load()

    cold_load = statistics.median(timeit(cold, reps))
    ours.resident.clear()
    return cpu_load, cold_load, floor


def _resident_scaling(unet, files: dict, reps: int) -> dict:
    """Switch cost ([X] <-> []) with 1 adapter resident and with 20."""
    out = {}
    for count in (1, 20):
        ours = Ours(unet)
        specs = [spec_for(files[(4, i)]) for i in range(count)]
        for s in specs:
            ours.switch([s])
        flip = alternating(ours.switch, [[specs[0]], []])
        out[f"switch_{count}_resident"] = statistics.median(timeit(flip, 200))
        ours.resident.clear()
    return out


def _inplace_addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kw) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def bench_steps(unet, files: dict, reps: int, latent: int) -> dict:
    """UNet step time: none, one unfused, 3-adapter mix, fused; and the extra FLOPs of LoRA."""
    from torch.utils.flop_counter import FlopCounterMode

    cross = unet.config.cross_attention_dim
    x, text = torch.randn(1, 4, latent, latent), torch.randn(1, 77, cross)
    step = lambda: unet(x, 500, encoder_hidden_states=text)  # noqa: E731

    def flops() -> int:
        mapping = {torch.ops.aten.addmm_: _inplace_addmm_flops}  # the LoRA layers' fused add
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            step()
        return counter.get_total_flops()

    ours = Ours(unet)
    one = [spec_for(files[(16, 0)])]
    mix = [spec_for(files[(16, i)], 0.5) for i in range(3)]
    fuser = Fuser()
    configs = {"none": [], "one": one, "mix": mix, "fused": mix}
    times: dict[str, list[float]] = {k: [] for k in configs}
    out: dict = {}
    with torch.inference_mode():
        step()
        base_flops = flops()
        for key, specs in (("one", one), ("mix", mix)):
            ours.switch(specs)
            out[f"extra_flops_{key}"] = flops() / base_flops - 1
        for _ in range(reps):  # interleaved, so background load hits every config alike
            for key, specs in configs.items():
                ours.switch(specs)
                if key == "fused":
                    fuser.fuse(ours.act.active_terms(), ("mix",))
                times[key] += timeit(step, 1)
                if fuser.fused:
                    fuser.unfuse()
    out.update({f"step_{k}": min(v) for k, v in times.items()})
    ours.switch([])
    ours.resident.clear()
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_rss(unet, files: dict) -> dict:
    """RSS after 10 and after 200 load/evict cycles (4 files, 1 resident, CPU tier of 1 adapter)."""
    one = files[(16, 0)].stat().st_size
    ours = Ours(unet, max_count=1, cpu_bytes=int(one * 1.5))
    specs = [spec_for(files[(16, i)]) for i in range(4)]
    out = {}
    for i in range(200):
        ours.switch([specs[i % 4]])
        if i + 1 in (10, 200):
            gc.collect()
            out[f"rss_{i + 1}"] = rss_mb()
    ours.switch([])
    ours.resident.clear()
    return out


def report(
    d: dict, o: dict, s: dict, r: dict, ranks: tuple[int, ...]
) -> list[tuple[str, float, str, bool]]:
    """(aim, measured value, target, met) rows."""

    def row(name, value, target, ok):
        return (name, value, target, bool(ok))

    rows = [
        row(
            "plain reload / resident switch",
            d["plain_reload"] / o["resident_switch"],
            ">= 100x",
            d["plain_reload"] / o["resident_switch"] >= 100,
        ),
        row(
            "set_adapters / resident switch",
            d["set_adapters"] / o["resident_switch"],
            ">= 2x",
            d["set_adapters"] / o["resident_switch"] >= 2,
        ),
    ]
    for rank in ranks:
        ratio = o[f"cpu_load_r{rank}"] / o[f"floor_r{rank}"]
        rows.append(row(f"CPU-cache load / copy floor (rank {rank})", ratio, "<= 10x", ratio <= 10))
    scale = o["switch_20_resident"] / o["switch_1_resident"]
    rows.append(row("switch with 20 resident / with 1", scale, "<= 1.2x", scale <= 1.2))
    rows.append(
        row("p99 / median of 200 swaps", o["p99_over_median"], "<= 2x", o["p99_over_median"] <= 2)
    )
    for key in ("one", "mix"):
        over = s[f"step_{key}"] / s["step_none"] - 1
        limit = s[f"extra_flops_{key}"] + 0.02
        rows.append(
            row(
                f"unfused step overhead ({key}) vs extra FLOPs+2% ({limit:.1%})",
                over,
                f"<= {limit:.3f}",
                over <= limit,
            )
        )
    growth = r["rss_200"] / r["rss_10"] - 1
    rows.append(row("RSS growth 10 -> 200 load/evict cycles", growth, "<= 0.10", growth <= 0.10))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny UNet, few repetitions (< 30 s)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    warnings.filterwarnings("ignore")
    from lorahub.models import quiet_diffusers

    quiet_diffusers()
    reps, ranks, latent = (3, (4, 16), 8) if args.smoke else (10, (4, 16, 64), 16)
    t0, load = time.time(), os.getloadavg()
    unet = build_unet(args.smoke)
    with tempfile.TemporaryDirectory() as tmp:
        files = {(r, i): write_lora(unet, Path(tmp) / f"r{r}-{i}.safetensors", r, 100 * r + i)
                 for r in ranks for i in range(20 if r == 4 else 4)}  # fmt: skip
        d = bench_diffusers(unet, files, reps)
        o = bench_ours(unet, files, reps, ranks)
        s = bench_steps(unet, files, 3 if args.smoke else 5, latent)
        r = bench_rss(unet, files)
    print(f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'tiny' if args.smoke else 'SD 1.5'} UNet, CPU fp32"
    )
    for name, value in {**d, **o, **s, **r}.items():
        unit = "" if name.startswith(("p99", "extra", "rss")) else " ms"
        shown = value if not unit else ms(value)
        print(f"  {name:28s} {shown:10.4f}{unit}")
    print("aims:")
    for name, value, target, ok in report(d, o, s, r, ranks):
        print(f"  [{'ok' if ok else 'MISS'}] {name}: {value:.3f} (aim {target})")
    print(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
