"""Generation commands: `generate` (one request through the engine) and `serve` (the HTTP API)."""

from __future__ import annotations

import ipaddress

import click

from lorahub.cli.output import handle_errors, info, warn

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
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@handle_errors
def serve(
    host: str,
    port: int,
    token: str | None,
    max_queue: int,
    base: str,
    device: str | None,
    dtype: str | None,
    compile_: bool,
    log_level: str,
) -> None:
    """Serve the HTTP API (and the web page) with one pipeline kept loaded."""
    import uvicorn

    from lorahub.server import create_app

    if not token and not is_loopback(host):
        warn_open_bind(host)
    app = create_app(
        token=token, max_queue=max_queue, base=base, device=device, dtype=dtype,
        compile=compile_, warm=True,
    )  # fmt: skip
    guard = "bearer token required" if token else "no token"
    info(f"lorahub serving {base} on http://{_url_host(host)}:{port} ({guard}; docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)


def warn_open_bind(host: str) -> None:
    """A loud warning: anyone who can reach this address can generate and change the registry."""
    warn(
        f"BINDING TO {host} WITHOUT A TOKEN: anyone who can reach this address can run generations "
        "and change your registry (tags, mixes). Pass --token (or set LORAHUB_TOKEN), or bind to 127.0.0.1."
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
