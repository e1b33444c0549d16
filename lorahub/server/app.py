"""The app factory: routers, error shape, token guard, body limit, metrics, and the web page."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.routing import compile_path

from lorahub import __version__
from lorahub.app.work import default_max_work
from lorahub.server import adapters, generate, images, mixes, status
from lorahub.server.auth import TokenMiddleware
from lorahub.server.errors import install_error_handlers
from lorahub.server.hosts import HostMiddleware
from lorahub.server.hosts import allowed_hosts as host_set
from lorahub.server.http_metrics import MetricsMiddleware
from lorahub.server.limits import BodyLimitMiddleware
from lorahub.server.schemas import ERROR_RESPONSES, MAX_BODY_BYTES
from lorahub.server.state import ServerState
from lorahub.server.uploads import MAX_IMAGE_BYTES
from lorahub.server.worker import EngineWorker

ROUTERS = (generate.router, adapters.router, images.router, mixes.router, status.router)
STATIC_DIR = Path(__file__).parent / "static"
FROM_IMAGE = "/v1/mixes/from-image"  # the one route whose body is an image, not JSON
DESCRIPTION = (
    "Generate with registered LoRA adapters and mixes, browse and tag the registry. "
    'Every error is `{"error": {"code", "message"}}`. With `--token`, send '
    "`Authorization: Bearer TOKEN` on every route but `/healthz`. A `Host` the server is not "
    "served as gets 421 (`lorahub serve --allowed-host`); a request over the work bound "
    "(images x steps x pixels, `--max-work`) gets 422 `too_much_work`; weights must be finite, "
    "within ±100. `POST /v1/mixes/from-image` takes an image (not JSON) as its body, up to 20 MB."
)


@dataclass(frozen=True)
class AppOptions:
    """What `create_app` builds: the engine (when none is given), the guards and the limits."""

    registry_path: str | Path | None = None  # default: the user's registry
    token: str | None = None  # require `Authorization: Bearer TOKEN` on every route but /healthz
    max_queue: int = 32  # generation requests that may wait behind the running one
    base: str = "tiny"
    device: str | None = None
    dtype: str | None = None
    compile: bool = False
    warm: bool = False  # load the pipeline at start, not on the first request
    slot_adapters: tuple[Any, ...] = ()  # with compile: AdapterSpecs that plan the hot-swap slots
    slot_rank: int | None = None
    static_dir: str | Path | None = STATIC_DIR  # the web page (None: no page)
    max_body_bytes: int = MAX_BODY_BYTES
    max_image_bytes: int = MAX_IMAGE_BYTES  # an uploaded image's body
    bind_host: str | None = None  # accepted in `Host`, beside loopback names and allowed_hosts
    allowed_hosts: Iterable[str] = ()
    max_work: int | None = None  # images x steps x pixels of one request (default: by device)
    max_batch: int = 1  # requests gathered into one denoising loop (1: each runs alone)
    batch_window_ms: float | None = None  # how long the worker waits to gather a batch


def create_app(
    options: AppOptions | None = None, /, *, engine: Any = None, **fields: Any
) -> FastAPI:
    """Build the ASGI app from `options` (AppOptions, or its fields as keywords); without
    `engine`, an Engine for `base` is built (pipeline loaded lazily, or at start with `warm`).

    Only loopback names, `bind_host` and `allowed_hosts` are accepted in `Host` (421 otherwise);
    `max_work` bounds images x steps x pixels of one request (default: by the engine's device);
    with `max_batch` > 1 and `batch_window_ms`, the built engine gathers waiting compatible
    requests (same size, steps, scheduler, guidance) into one denoising loop;
    bodies are at most `max_body_bytes`, an uploaded image `max_image_bytes`."""
    o = replace(options or AppOptions(), **fields)
    owned = engine is None
    if engine is None:
        engine = build_engine(o)
    worker = EngineWorker(engine, max_queue=o.max_queue, owned=owned)
    st = ServerState(
        base=o.base,
        worker=worker,
        registry_path=Path(o.registry_path) if o.registry_path is not None else None,
        token=o.token or None,
        static_dir=Path(o.static_dir) if o.static_dir is not None else None,
        max_work=o.max_work or default_max_work(engine.device),
    )
    worker.set_latency_source(st.metrics.generation_request_seconds.mean)
    app = FastAPI(
        title="lorahub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(st, o.warm),
    )
    app.state.lorahub = st
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    _mount_static(app, st)
    limits = (o.max_body_bytes, {FROM_IMAGE: o.max_image_bytes})
    _add_middleware(app, st, limits, host_set(o.bind_host, o.allowed_hosts))
    return app


def build_engine(o: AppOptions) -> Any:
    """The engine for `o.base` (its pipeline loads on first use, or at start with `warm`).

    With `compile`, `slot_adapters` (resolved AdapterSpecs) plan the hot-swap slots."""
    from lorahub.inference import Engine

    return Engine(
        base=o.base,
        device=o.device,
        dtype=o.dtype,
        compile=o.compile,
        max_queue=None,  # the worker admits: EngineWorker(max_queue) is the one bound
        slot_adapters=tuple(o.slot_adapters),
        slot_rank=o.slot_rank,
        max_batch=o.max_batch,
        batch_window_ms=o.batch_window_ms if o.max_batch > 1 else None,
    )


def _lifespan(st: ServerState, warm: bool) -> Callable[[FastAPI], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            st.worker.warm_up()
        yield
        st.worker.shutdown()

    return lifespan


def _mount_static(app: FastAPI, st: ServerState) -> None:
    """Serve the web page at `/` when its folder has an index.html (after the API routes)."""
    if st.static_served:
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=st.static_dir, html=True), name="static")


def _add_middleware(
    app: FastAPI, st: ServerState, limits: tuple[int, dict[str, int]], hosts: frozenset[str]
) -> None:
    """Outermost first at run time: metrics, the Host guard, the token guard, the body limit."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits[0], path_limits=limits[1])
    if st.token:
        app.add_middleware(TokenMiddleware, token=st.token, static_served=lambda: st.static_served)
    app.add_middleware(HostMiddleware, allowed=hosts)
    app.add_middleware(MetricsMiddleware, metrics=st.metrics, route_of=_route_finder(app))


def _route_finder(app: FastAPI) -> Callable[[dict], str]:
    """The route template a request matched (bounded label values for /metrics)."""
    paths = [r.path for r in app.router.routes if isinstance(getattr(r, "path", None), str)]
    for router in ROUTERS:
        paths += [r.path for r in router.routes if isinstance(getattr(r, "path", None), str)]
    patterns = [(compile_path(p)[0], p) for p in paths]

    def route_of(scope: dict) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str) and path:
            return path
        for regex, template in patterns:
            if regex.match(scope.get("path", "")):
                return template
        return "static" if st_served(app) else "unmatched"

    return route_of


def st_served(app: FastAPI) -> bool:
    return bool(app.state.lorahub.static_served)
