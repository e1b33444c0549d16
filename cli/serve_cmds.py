"""Generation commands: `generate` (one request through the engine) and `serve` (the HTTP API)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import click

from lorahub.cli.output import info, open_registry, print_text, warn

if TYPE_CHECKING:
    from lorahub.server.ray_config import RaySettings
    from lorahub.types import AdapterSpec

LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (localhost only by default).",
)
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="TCP port."
)
@click.option(
    "--token",
    envvar="LORAHUB_TOKEN",
    default=None,
    help="Require `Authorization: Bearer TOKEN` on every route but /healthz (or set LORAHUB_TOKEN).",
)
@click.option(
    "--max-queue",
    default=32,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Generation requests that may wait behind the running one; more get 429 with Retry-After.",
)
@click.option(
    "--max-batch",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Most images in one denoising loop: waiting requests of the same size, steps, "
    "scheduler and guidance share it, whatever their adapters (1 turns batching off).",
)
@click.option(
    "--batch-window-ms",
    default=20.0,
    show_default=True,
    type=click.FloatRange(0, 10_000),
    help="How long the worker waits for more requests to join a batch.",
)
@click.option(
    "--max-work",
    type=click.IntRange(1, None),
    default=None,
    help="Most work one request may ask: images x steps x pixels (quadratic past 1 MP). "
    "Default: four 1024² images at 50 steps on CUDA, one 512² at 50 steps on CPU.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host is NAME (default: loopback names and --host only; "
    "others get 421, against DNS rebinding); repeatable, '*' turns the check off.",
)
@click.option(
    "--base",
    default="tiny",
    show_default=True,
    help="Base model: tiny, tiny-sdxl, a folder or a Hub id.",
)
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: CUDA when present).")
@click.option(
    "--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="Weights dtype."
)
@click.option(
    "--compile", "compile_", is_flag=True, help="torch.compile the UNet (compile-safe hot-swap)."
)
@click.option(
    "--slot-adapter",
    "slot_refs",
    multiple=True,
    metavar="REF",
    help="With --compile: adapters that plan the hot-swap slots (default: every registered "
    "UNet LoRA for the base).",
)
@click.option(
    "--slot-rank",
    type=click.IntRange(1, 1024),
    default=None,
    help="With --compile: slot rank (default: the planned adapters' largest).",
)
@click.option(
    "--ray",
    "on_ray",
    is_flag=True,
    help="Serve on Ray Serve: engine replicas with adapter-affinity routing (needs lorahub[ray]).",
)
@click.option(
    "--replicas",
    default=2,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="With --ray: engine replicas.",
)
@click.option(
    "--max-replicas",
    type=click.IntRange(1, 4096),
    default=None,
    help="With --ray: autoscale from --replicas up to this many.",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDR",
    help="With --ray: an existing cluster ('auto', host:port); default: a local Ray instance.",
)
@click.option(
    "--gpus-per-replica",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 64),
    help="With --ray: GPUs each engine replica reserves.",
)
@click.option(
    "--cpus-per-replica",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1024),
    help="With --ray: CPUs each engine replica reserves.",
)
@click.option(
    "--sets-per-replica",
    default=4,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="With --ray: adapter sets kept resident per replica (LRU).",
)
@click.option(
    "--max-set-adapters",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="With --ray: most adapters in one request.",
)
@click.option(
    "--adapters-from",
    default="path",
    show_default=True,
    type=click.Choice(["path", "hub", "auto"]),
    help="With --ray: replicas read adapter files by path, from the Hub (repo@revision of a "
    "push or pull, sha256-checked), or auto (path when readable, else Hub).",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="With --ray: print a Ray Serve config file (for `serve deploy`) and exit.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(**opts: Any) -> None:
    """Serve the HTTP API (and the web page) with one pipeline kept loaded (or on Ray, --ray)."""
    if opts["on_ray"] or opts["print_config"]:
        return serve_ray(ray_settings_of(opts), opts["ray_address"], opts["print_config"])
    serve_here(opts)


def ray_settings_of(o: dict[str, Any]) -> RaySettings:
    """The Ray settings of `serve`'s options."""
    return ray_settings(
        token=o["token"],
        device=o["device"],
        dtype=o["dtype"],
        replicas=o["replicas"],
        max_replicas=o["max_replicas"],
        num_gpus=o["gpus_per_replica"],
        num_cpus=o["cpus_per_replica"],
        max_sets=o["sets_per_replica"],
        max_set_adapters=o["max_set_adapters"],
        max_queue=o["max_queue"],
        max_work=o["max_work"],
        host=o["host"],
        port=o["port"],
        allowed_hosts=o["allowed_hosts"],
        base=o["base"],
        adapters_from=o["adapters_from"],
    )


def serve_here(o: dict[str, Any]) -> None:
    """Build the app from `serve`'s options and run it with uvicorn in this process."""
    import uvicorn

    from lorahub.server import AppOptions, create_app

    host, port, token, base = o["host"], o["port"], o["token"], o["base"]
    if not token and not is_loopback(host):
        warn_open_bind(host)
    slots = plan_slots(base, o["slot_refs"]) if o["compile_"] else ()
    if o["compile_"]:
        info(f"compiled mode: hot-swap slots planned from {len(slots)} adapter(s)")
    options = AppOptions(
        token=token,
        max_queue=o["max_queue"],
        base=base,
        device=o["device"],
        dtype=o["dtype"],
        compile=o["compile_"],
        warm=True,
        slot_adapters=slots,
        slot_rank=o["slot_rank"],
        bind_host=host,
        allowed_hosts=o["allowed_hosts"],
        max_work=o["max_work"],
        max_batch=o["max_batch"],
        batch_window_ms=o["batch_window_ms"] or None,
    )
    app = create_app(options)
    guard = "bearer token required" if token else "no token"
    info(f"lorahub serving {base} on http://{_url_host(host)}:{port} ({guard}; docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level=o["log_level"], server_header=False)


def ray_settings(**fields: Any) -> RaySettings:
    """The Ray settings of this command line (the registry by absolute path, for the replicas)."""
    import os

    from lorahub.paths import registry_path
    from lorahub.server.ray_config import RaySettings

    forward = ("LORAHUB_CACHE", "HF_ENDPOINT")  # never HF_TOKEN: runtime_env is visible in Ray
    env = {k: os.environ[k] for k in forward if k in os.environ}
    return RaySettings(registry_path=str(registry_path().resolve()), env=env, **fields)


def serve_ray(settings: RaySettings, address: str | None, print_config: bool) -> None:
    """`--print-config`: the Serve config on stdout; else deploy on Ray and serve until Ctrl-C."""
    from lorahub.server import ray_config, ray_serve

    if print_config:
        print_text(ray_config.config_yaml(settings))
        return
    if not settings.token and not is_loopback(settings.host):
        warn_open_bind(settings.host)

    def ready(url: str) -> None:
        info(
            f"lorahub on Ray: {settings.replicas} engine replica(s) of {settings.base} at {url} (Ctrl-C stops)"
        )

    ray_serve.run(settings, address, ready)


def plan_slots(base: str, refs: tuple[str, ...]) -> tuple[AdapterSpec, ...]:
    """`--compile`'s slot adapters, planned from the user's registry."""
    from lorahub.app.slots import plan_slot_specs

    with open_registry() as registry:
        return plan_slot_specs(registry, base, refs)


def warn_open_bind(host: str) -> None:
    """A loud warning: anyone who can reach this address can generate and change the registry."""
    warn(
        f"BINDING TO {host} WITHOUT A TOKEN: anyone who can reach this address can run generations "
        "and change your registry (tags, mixes). Pass --token (or set LORAHUB_TOKEN), or bind to 127.0.0.1."
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
