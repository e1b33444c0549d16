"""Adapter affinity on Ray Serve: `lorahub serve --ray` with multiplexed routing against none.

A local Ray instance, 2 CPU engine replicas of the tiny base, 8 registered adapter sets (one
seeded random LoRA file each) drawn Zipf(1.1), 200 requests of small images through the HTTP
API, 4 at a time. Each replica keeps `sets / replicas` sets resident and no CPU copy
(`cpu_cache_mb=0`), so every cold set is a real file read and upload. By default the adapters are
heavy (rank 512 on every linear and conv layer of the UNet plus the text encoder's attention,
50 MiB each) and a request is one step, so that a cold load costs about a step (the issue's
throughput aim is for loads costing more); `--targets attention --rank 32 --steps 2` is the
light case. The engine's own costs (a request with its set resident and not, one step) are
measured first and printed. The same workload runs on the same deployment twice: with each
request's adapter-set id as Ray's `multiplexed_model_id` (affinity), and without it (Ray's default power-of-two routing, what a plain load balancer does),
alternated for `--rounds` rounds. Prints hit rates, requests/s and their ratios (medians).
`--smoke`: 4 sets of rank 16, 24 requests, one round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lorahub.examples import (  # noqa: E402
    STYLE_TARGETS,
    UNET_TARGETS,
    ExampleAdapter,
    write_example_adapter,
)
from lorahub.registry import Registry  # noqa: E402

PROMPT = "a red circle on a blue background"
TARGETS = {  # UNet modules the adapters touch
    "attention": UNET_TARGETS,
    "all": (*STYLE_TARGETS, "conv1", "conv2", "conv_shortcut", "conv", "time_emb_proj",
            "conv_in", "conv_out", "linear_1", "linear_2"),  # every linear and conv layer
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--smoke", action="store_true", help="4 sets of rank 16, 24 requests, 1 round (the test's)"
    )
    p.add_argument("--sets", type=int, default=8)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rank", type=int, default=512, help="rank of the adapters (file size)")
    p.add_argument("--targets", choices=sorted(TARGETS), default="all", help="UNet layers")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--max-queue", type=int, default=3, help="requests waiting per replica")
    p.add_argument("--rounds", type=int, default=3, help="alternated runs of both routings")
    args = p.parse_args()
    if args.smoke:
        args.sets, args.requests, args.rank, args.rounds = 4, 24, 16, 1
    return args


def register_sets(home: Path, count: int, rank: int, targets: str) -> list[str]:
    """`count` seeded random LoRAs for tiny-sd1 (UNet + text encoder), registered; their names."""
    names = []
    with Registry(home / "registry.db") as reg:
        for i in range(count):
            spec = ExampleAdapter(
                f"set{i}", rank, float(rank), 100 + i, text_encoder=True, targets=TARGETS[targets]
            )
            path = write_example_adapter("tiny", home / f"set{i}.safetensors", spec)
            reg.add_adapter(path, name=spec.name)
            names.append(spec.name)
    return names


def zipf_draws(n: int, count: int, s: float, seed: int = 0) -> list[int]:
    """`n` indices in [0, count) drawn with P(k) proportional to 1 / (k+1)^s."""
    weights = 1.0 / np.arange(1, count + 1) ** s
    rng = np.random.default_rng(seed)
    return list(rng.choice(count, size=n, p=weights / weights.sum()))


def costs(home: Path, names: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Here, in seconds, in one engine that holds one set and no CPU copy: `hold` (a set's file
    read + upload), a request whose set is resident, one whose set is not (each evicts the
    previous), so a cold load = their difference; a step = (8 steps - 1 step) / 7, set applied."""
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.registry import Registry as Reg
    from lorahub.types import MixMember

    with Reg(home / "registry.db") as reg:
        specs = reg.resolve_members([MixMember(ref=n) for n in names])
    engine = Engine(base="tiny", device="cpu", dtype="fp32", cpu_cache_bytes=0, max_resident=1)
    engine.runtime()

    def timed(sets: list, steps: int) -> float:
        side = args.size
        requests = [GenerationRequest(PROMPT, adapters=(s,), steps=steps, width=side, height=side)
                    for s in sets]  # fmt: skip
        engine.generate(requests[0])
        runs = []
        for request in requests:
            t = time.perf_counter()
            engine.generate(request)
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    warm, cold = timed(specs[:1] * 6, args.steps), timed(specs * 2, args.steps)
    step = (timed(specs[:1] * 4, 8) - timed(specs[:1] * 4, 1)) / 7
    holds = []
    for spec in specs[1:]:
        engine.let_go(engine.hold([specs[0]]))  # the previous set resident: this one is cold
        t = time.perf_counter()
        engine.let_go(engine.hold([spec]))
        holds.append(time.perf_counter() - t)
    engine.close()
    size = statistics.median((home / f"{n}.safetensors").stat().st_size for n in names)
    return {"load": cold - warm, "hold": statistics.median(holds), "step": step, "warm": warm,
            "cold": cold, "file_mb": size / 2**20}  # fmt: skip


def run_mode(settings, names, draws, args) -> dict[str, float]:
    """Deploy with `settings`, send the workload, read the replicas' figures, tear down."""
    import httpx
    from ray import serve

    from lorahub.server import ray_serve

    url = ray_serve.deploy(settings)
    body = {"prompt": PROMPT, "steps": args.steps, "width": args.size, "height": args.size}

    def send(i: int) -> tuple[int, str]:
        adapters = [{"name": names[draws[i]]}]
        r = httpx.post(f"{url}/v1/generate", json={**body, "adapters": adapters}, timeout=300)
        return r.status_code, "" if r.status_code == 200 else r.text[:300]

    with ThreadPoolExecutor(args.concurrency) as pool:  # warm both replicas' pipelines
        list(pool.map(lambda _: send(0), range(args.concurrency)))
    time.sleep(0.5)  # the replicas' last figures reach the ingress with their replies
    text = httpx.get(f"{url}/metrics", timeout=30).text
    before, busy_before = replica_figures(text), engine_seconds(text)
    t = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        codes = list(pool.map(send, range(len(draws))))
    seconds = time.perf_counter() - t
    text = httpx.get(f"{url}/metrics", timeout=30).text
    after, busy = replica_figures(text), engine_seconds(text) - busy_before
    serve.delete("lorahub")
    bad = [(code, text) for code, text in codes if code != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, the first: {bad[0][0]} {bad[0][1]}")

    def gained(key: str) -> float:
        return sum(f.get(key, 0) - before.get(r, {}).get(key, 0) for r, f in after.items())

    return {
        "seconds": seconds,
        "req_s": len(draws) / seconds,
        "hit_rate": gained("set_hits") / max(1, gained("set_requests")),
        "loads": gained("set_requests") - gained("set_hits"),  # misses: a file read each
        "replicas": len(after),
        "busy": busy / (args.replicas * seconds),  # share of replica time spent sampling
    }


def engine_seconds(text: str) -> float:
    """The replicas' sampling seconds so far (the engine generation histogram's sum)."""
    import re

    m = re.search(r"^lorahub_engine_generation_duration_seconds_sum (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def replica_figures(text: str) -> dict[str, dict[str, float]]:
    """{replica: {figure: value}} from the `lorahub_replica_*` lines of /metrics."""
    import re

    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = re.match(r'lorahub_replica_(\w+?)(?:_total)?\{replica="([^"]+)"\} (\S+)$', line)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return out


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="lorahub-ray-bench-") as tmp:
        run_all(args, Path(tmp))


def run_all(args: argparse.Namespace, home: Path) -> None:
    """Adapters, costs, both routings, the report."""
    import ray
    from ray import serve

    from lorahub.paths import lorahub_cache
    from lorahub.server.ray_config import RaySettings

    names = register_sets(home, args.sets, args.rank, args.targets)
    cost = costs(home, names, args)
    draws = zipf_draws(args.requests, args.sets, args.zipf)
    env = {"LORAHUB_CACHE": str(lorahub_cache()), "OMP_NUM_THREADS": "1"}
    base = dict(
        registry_path=str(home / "registry.db"), device="cpu", dtype="fp32",
        replicas=args.replicas, num_cpus=1, max_sets=max(1, args.sets // args.replicas),
        max_set_adapters=1, max_queue=args.max_queue, cpu_cache_mb=0, port=free_port(), env=env,
    )  # fmt: skip
    ray.init(num_cpus=args.replicas, include_dashboard=False, log_to_driver=False)
    try:
        rounds = [  # alternated, so the machine's other jobs weigh on both routings alike
            {
                "multiplexed": run_mode(RaySettings(**base, multiplex=True), names, draws, args),
                "no id": run_mode(RaySettings(**base, multiplex=False), names, draws, args),
            }
            for _ in range(args.rounds)
        ]
    finally:
        serve.shutdown()
        ray.shutdown()
    report(args, cost, rounds)


def report(args, cost: dict[str, float], rounds: list[dict[str, dict[str, float]]]) -> None:
    print(
        f"{args.replicas} replicas, {args.sets} adapter sets (rank {args.rank}, {args.targets} "
        f"UNet layers, {cost['file_mb']:.1f} MiB each) Zipf({args.zipf}), {args.requests} requests "
        f"of {args.size}x{args.size} at {args.steps} step(s), {args.concurrency} at a time"
    )
    ms = {k: v * 1000 for k, v in cost.items() if k != "file_mb"}
    print(
        f"in one engine: request with its set resident {ms['warm']:.1f} ms, not resident "
        f"{ms['cold']:.1f} ms, so a cold set load costs {ms['load']:.1f} ms (hold alone: file read + "
        f"upload {ms['hold']:.1f} ms); one step with a set applied {ms['step']:.1f} ms; "
        f"load / step {ms['load'] / ms['step']:.2f}x"
    )
    print(
        f"{'round':<6}{'routing':<13} {'hit rate':>9} {'cold loads':>10} {'req/s':>8} {'seconds':>8}"
    )
    for i, results in enumerate(rounds, 1):
        for mode, r in results.items():
            print(
                f"{i:<6}{mode:<13} {r['hit_rate']:>9.3f} {r['loads']:>10.0f} {r['req_s']:>8.2f} "
                f"{r['seconds']:>8.2f} {r['busy']:>9.0%}"
            )
    summary(args, rounds)


def summary(args, rounds: list[dict[str, dict[str, float]]]) -> None:
    """Medians over the rounds: hit rates, the throughput ratio, cold loads, a load's cost."""

    def median(mode: str, key: str) -> float:
        return statistics.median(r[mode][key] for r in rounds)

    ratios = sorted(r["multiplexed"]["req_s"] / r["no id"]["req_s"] for r in rounds)
    print(
        f"hit rate (median): multiplexed {median('multiplexed', 'hit_rate'):.3f} vs no id "
        f"{median('no id', 'hit_rate'):.3f} (aim >= 0.9)"
    )
    print(
        f"throughput ratio multiplexed / no id: {statistics.median(ratios):.2f}x median of "
        f"{len(ratios)} round(s) ({', '.join(f'{x:.2f}' for x in ratios)}) (aim >= 1.3x)"
    )
    loads = {mode: median(mode, "loads") for mode in ("multiplexed", "no id")}
    print(
        f"cold loads ratio no id / multiplexed: {loads['no id'] / max(1, loads['multiplexed']):.2f}x"
    )
    extra = loads["no id"] - loads["multiplexed"]
    if extra > 0:  # replica-seconds the extra cold loads took in the run, each
        saved = median("no id", "seconds") - median("multiplexed", "seconds")
        print(
            f"implied cost of a cold load in the replicas (replica-seconds saved per load "
            f"avoided): {saved * args.replicas / extra * 1000:.0f} ms"
        )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
