"""`/healthz` (no auth), `/v1/status` (what the page shows) and `/metrics` (Prometheus text)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from lorahub import __version__
from lorahub.metrics import render
from lorahub.server.state import state

router = APIRouter(tags=["status"])
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", summary="Liveness (needs no token)")
def healthz() -> dict[str, Any]:
    """Always `{"ok": true}` while the process answers."""
    return {"ok": True}


@router.get("/v1/status", summary="Loaded base, resident adapters, queue, recent generations")
def get_status(request: Request) -> dict[str, Any]:
    """The server's state as the web page shows it."""
    st = state(request)
    engine = st.engine_status()
    bases = engine.get("bases") or []
    return {
        "version": __version__,
        "base": st.base,
        "base_family": st.base_family,
        "loaded": bases,
        "engine_loaded": bool(bases),
        "resident_adapters": [a for b in bases for a in b.get("resident", [])],
        "queue": {
            "depth": st.worker.depth(),
            "limit": st.worker.capacity,
            "max_waiting": st.worker.max_queue,
        },
        "recent": list(st.recent),
        "generations": st.metrics.generations,
        "images": st.metrics.images,
        "uptime_s": round(time.time() - st.started_at, 3),
        "auth": st.token is not None,
        "device": engine.get("device"),
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {PROMETHEUS_TYPE: {}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    """Requests by route and status, queue depth, swaps, cache hits/misses, latency histograms."""
    st = state(request)
    text = render(st.metrics, st.worker.depth(), st.worker.capacity, st.engine_stats())
    return PlainTextResponse(text, media_type=PROMETHEUS_TYPE)
