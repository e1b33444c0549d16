"""Adapter affinity on Ray Serve: `lorahub serve --ray` with multiplexed routing against none.

A local Ray instance, 2 CPU engine replicas of the tiny base, 8 registered adapter sets (one
seeded random LoRA file each) drawn Zipf(1.1), 200 requests of small images through the HTTP
API, 4 at a time. Each replica keeps `sets / replicas` sets resident and no CPU copy
(`cpu_cache_mb=0`), so every cold set is a real file read and upload. The same workload runs on
the same deployment twice: with each request's adapter-set id as Ray's `multiplexed_model_id`
(affinity), and without it (Ray's default power-of-two routing, what a plain load balancer does).
Prints hit rates, requests/s and their ratios. `--smoke`: 4 sets, 24 requests.
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

from lorahub.examples import ExampleAdapter, write_example_adapter  # noqa: E402
from lorahub.registry import Registry  # noqa: E402

PROMPT = "a red circle on a blue background"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="4 sets, 24 requests (the test's run)")
    p.add_argument("--sets", type=int, default=8)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rank", type=int, default=32, help="rank of the adapters (file size)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--max-queue", type=int, default=3, help="requests waiting per replica")
    args = p.parse_args()
    if args.smoke:
        args.sets, args.requests = 4, 24
    return args


def register_sets(home: Path, count: int, rank: int) -> list[str]:
    """`count` seeded random LoRAs for tiny-sd1 (UNet + text encoder), registered; their names."""
    names = []
    with Registry(home / "registry.db") as reg:
        for i in range(count):
            spec = ExampleAdapter(f"set{i}", rank, float(rank), 100 + i, text_encoder=True)
            path = write_example_adapter("tiny", home / f"set{i}.safetensors", spec)
            reg.add_adapter(path, name=spec.name)
            names.append(spec.name)
    return names


def zipf_draws(n: int, count: int, s: float, seed: int = 0) -> list[int]:
    """`n` indices in [0, count) drawn with P(k) proportional to 1 / (k+1)^s."""
    weights = 1.0 / np.arange(1, count + 1) ** s
    rng = np.random.default_rng(seed)
    return list(rng.choice(count, size=n, p=weights / weights.sum()))


def costs(home: Path, names: list[str], args: argparse.Namespace) -> tuple[float, float]:
    """(seconds of one cold set load: file read + upload, seconds of one sampling step), here."""
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.registry import Registry as Reg
    from lorahub.types import MixMember

    with Reg(home / "registry.db") as reg:
        specs = reg.resolve_members([MixMember(ref=n) for n in names])
    engine = Engine(base="tiny", device="cpu", dtype="fp32", cpu_cache_bytes=0)
    engine.runtime()
    loads = []
    for spec in specs:
        t = time.perf_counter()
        keys = engine.hold([spec])
        loads.append(time.perf_counter() - t)
        engine.let_go(keys)
    side = args.size
    request = GenerationRequest(PROMPT, steps=8, width=side, height=side)
    engine.generate(request)
    t = time.perf_counter()
    engine.generate(request)
    step = (time.perf_counter() - t) / 8
    engine.close()
    return statistics.median(loads), step


def run_mode(settings, names, draws, args) -> dict[str, float]:
    """Deploy with `settings`, send the workload, read the replicas' figures, tear down."""
    import httpx
    from ray import serve

    from lorahub.server import ray_serve

    url = ray_serve.deploy(settings)
    body = {"prompt": PROMPT, "steps": args.steps, "width": args.size, "height": args.size}

    def send(i: int) -> int:
        adapters = [{"name": names[draws[i]]}]
        r = httpx.post(f"{url}/v1/generate", json={**body, "adapters": adapters}, timeout=300)
        return r.status_code

    with ThreadPoolExecutor(args.concurrency) as pool:  # warm both replicas' pipelines
        list(pool.map(lambda _: send(0), range(args.concurrency)))
    time.sleep(0.5)  # the replicas' last figures reach the ingress with their replies
    before = replica_figures(httpx.get(f"{url}/metrics", timeout=30).text)
    t = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        codes = list(pool.map(send, range(len(draws))))
    seconds = time.perf_counter() - t
    after = replica_figures(httpx.get(f"{url}/metrics", timeout=30).text)
    serve.delete("lorahub")
    bad = [c for c in codes if c != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed: {sorted(set(bad))}")

    def gained(key: str) -> float:
        return sum(f.get(key, 0) - before.get(r, {}).get(key, 0) for r, f in after.items())

    return {
        "seconds": seconds,
        "req_s": len(draws) / seconds,
        "hit_rate": gained("set_hits") / max(1, gained("set_requests")),
        "loads": gained("set_requests") - gained("set_hits"),  # misses: a file read each
        "replicas": len(after),
    }


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

    names = register_sets(home, args.sets, args.rank)
    load_s, step_s = costs(home, names, args)
    draws = zipf_draws(args.requests, args.sets, args.zipf)
    env = {"LORAHUB_CACHE": str(lorahub_cache()), "OMP_NUM_THREADS": "1"}
    base = dict(
        registry_path=str(home / "registry.db"), device="cpu", dtype="fp32",
        replicas=args.replicas, num_cpus=1, max_sets=max(1, args.sets // args.replicas),
        max_set_adapters=1, max_queue=args.max_queue, cpu_cache_mb=0, port=free_port(), env=env,
    )  # fmt: skip
    ray.init(num_cpus=args.replicas, include_dashboard=False, log_to_driver=False)
    try:
        results = {
            "multiplexed": run_mode(RaySettings(**base, multiplex=True), names, draws, args),
            "no multiplexed id": run_mode(RaySettings(**base, multiplex=False), names, draws, args),
        }
    finally:
        serve.shutdown()
        ray.shutdown()
    report(args, load_s, step_s, results)


def report(args, load_s: float, step_s: float, results: dict[str, dict[str, float]]) -> None:
    print(
        f"{args.replicas} replicas, {args.sets} adapter sets (rank {args.rank}) Zipf({args.zipf}), "
        f"{args.requests} requests of {args.size}x{args.size} at {args.steps} steps, "
        f"{args.concurrency} at a time"
    )
    print(
        f"cold set load (file read + upload): {load_s * 1000:.1f} ms; one step: {step_s * 1000:.1f} ms"
    )
    print(f"{'routing':<20} {'hit rate':>9} {'cold loads':>10} {'req/s':>8} {'seconds':>8}")
    for mode, r in results.items():
        print(
            f"{mode:<20} {r['hit_rate']:>9.3f} {r['loads']:>10.0f} {r['req_s']:>8.2f} {r['seconds']:>8.2f}"
        )
    mux, rr = results["multiplexed"], results["no multiplexed id"]
    print(f"hit rate: multiplexed {mux['hit_rate']:.3f} vs {rr['hit_rate']:.3f} (aim >= 0.9)")
    print(f"throughput ratio multiplexed / no id: {mux['req_s'] / rr['req_s']:.2f}x (aim >= 1.3x)")
    print(f"cold loads ratio no id / multiplexed: {rr['loads'] / max(1, mux['loads']):.2f}x")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
