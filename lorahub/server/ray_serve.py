"""lorahub on Ray Serve: the `lorahub serve` app as the ingress, engine replicas behind it.

`build_app(args)` is the application builder (`lorahub.server.ray_serve:build_app` in a Serve
config file); `run(settings, address, ready)` is `lorahub serve --ray`. The ingress is the very
app `create_app` builds (routes, token, error shape, /metrics, the web page); it resolves adapters
against the registry as `lorahub serve` does and hands each request to `RayEngine`, which sends it
to the engine deployment by adapter set. Ray is imported only here, inside functions.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from lorahub.errors import NotFoundError, UnsupportedError
from lorahub.server.ray_config import (
    APP_NAME,
    ENGINE,
    INGRESS,
    RaySettings,
    ingress_options,
)

RAY_MISSING = 'Ray Serve is not installed: pip install "lorahub[ray]"'


def require_ray() -> tuple[Any, Any]:
    """(ray, ray.serve), or one UnsupportedError line saying which extra to install."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise UnsupportedError(RAY_MISSING) from None
    return ray, serve


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The Ray Serve application (ingress bound to the engine deployment) for builder `args`."""
    from lorahub.server.ray_replica import engine_deployment

    require_ray()
    settings = RaySettings.from_args(args)
    engine = engine_deployment(settings).bind(settings.to_args())
    return ingress_deployment(settings).bind(engine)


def ingress_deployment(settings: RaySettings) -> Any:
    """The ingress: `create_app`'s FastAPI app, built on its replica (its engine is `RayEngine`)."""
    _, serve = require_ray()

    def build() -> Any:
        return ingress_app(settings)

    return serve.deployment(name=INGRESS, **ingress_options(settings))(serve.ingress(build)())


def ingress_app(settings: RaySettings) -> Any:
    """The app of an ingress replica: requests go to this application's engine deployment."""
    from ray import serve

    from lorahub.server.app import create_app
    from lorahub.server.ray_engine import RayEngine

    app_name = serve.get_replica_context().app_name
    handle = serve.get_deployment_handle(ENGINE, app_name=app_name)
    device = "cuda" if settings.num_gpus else (settings.device or "cpu")
    engine = RayEngine(
        handle,
        device=device,
        max_set_adapters=settings.max_set_adapters,
        multiplex=settings.multiplex,
        adapters_from=settings.adapters_from,
        registry_path=settings.registry_path,
    )
    capacity = settings.top_replicas * (settings.max_queue + 1)
    return create_app(
        registry_path=settings.registry_path,
        engine=engine,
        token=settings.token or os.environ.get("LORAHUB_TOKEN") or None,
        max_queue=capacity - 1,
        base=settings.base,
        bind_host=settings.host,
        allowed_hosts=settings.allowed_hosts,
        max_work=settings.max_work,
    )


def deploy(settings: RaySettings, address: str | None = None) -> str:
    """Connect to (or start) Ray, start Serve's proxy, run the application; its URL."""
    ray, serve = require_ray()
    connect(ray, address)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings.to_args()), name=APP_NAME, route_prefix="/")
    return f"http://{settings.host}:{settings.port}"


def connect(ray: Any, address: str | None) -> None:
    """`ray.init` here or at `address`; an address that does not answer is one clear error."""
    if ray.is_initialized():
        return
    if address and address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotFoundError(f"cannot connect to the Ray cluster at {address}: {first}") from None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A `host:port` (or `ray://host:port`) that does not accept a connection: NotFoundError."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise NotFoundError(
            f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); "
            "start it with `ray start --head`, or use --ray-address auto on a cluster node"
        ) from None


def run(
    settings: RaySettings,
    address: str | None = None,
    ready: Callable[[str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Deploy, tell `ready` the URL, serve until interrupted (or `stop()`), then shut Serve down."""
    ray, serve = require_ray()
    try:
        url = deploy(settings, address)
    except BaseException:
        if ray.is_initialized():  # connected, then failed: leave nothing running
            ray.shutdown()
        raise
    try:
        stop_on_sigterm()
        if ready is not None:
            ready(url)
        while not (stop is not None and stop()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(ray, serve, address)


def stop_on_sigterm() -> None:
    """SIGTERM (a service manager's stop) ends serving as Ctrl-C does, so Serve is shut down."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def shutdown(ray: Any, serve: Any, address: str | None = None) -> None:
    """Remove the application (on a cluster) or stop Serve (local); disconnect from Ray."""
    try:
        serve.delete(APP_NAME) if address else serve.shutdown()
    except Exception:  # already gone: nothing left to stop
        pass
    ray.shutdown()
