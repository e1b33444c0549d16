"""Prometheus text exposition (format 0.0.4) without a client library: counters, gauges, histograms."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Histogram:
    """Cumulative-bucket histogram of seconds."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.count += 1
            self.sum += value
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self.counts[i] += 1

    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def lines(self, name: str) -> list[str]:
        with self._lock:
            out = [
                f'{name}_bucket{{le="{_num(b)}"}} {c}'
                for b, c in zip(self.buckets, self.counts, strict=True)
            ]
            out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
            out.append(f"{name}_sum {_num(self.sum)}")
            out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    """What the server itself measures: requests by route and status, generation and swap latency."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.request_seconds = Histogram()
        self.generation_seconds = Histogram()
        self.generations = 0
        self.images = 0
        self.started = time.time()
        self._lock = threading.Lock()

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
        self.request_seconds.observe(seconds)

    def count_generation(self, seconds: float, images: int) -> None:
        with self._lock:
            self.generations += 1
            self.images += images
        self.generation_seconds.observe(seconds)


def render(metrics: Metrics, queue_depth: int, queue_limit: int, engine: Mapping[str, Any]) -> str:
    """The whole /metrics page."""
    out: list[str] = []
    _family(
        out, "lorahub_http_requests_total", "counter", "HTTP requests by method, route and status."
    )
    with metrics._lock:
        rows = sorted(metrics.requests.items())
    for (method, route, status), value in rows:
        labels = _labels(method=method, route=route, status=status)
        out.append(f"lorahub_http_requests_total{labels} {value}")
    _family(out, "lorahub_http_request_duration_seconds", "histogram", "HTTP request latency.")
    out += metrics.request_seconds.lines("lorahub_http_request_duration_seconds")
    _gauge(out, "lorahub_queue_depth", "Generation requests queued or running.", queue_depth)
    _gauge(out, "lorahub_queue_limit", "Most generation requests admitted at once.", queue_limit)
    _counter(
        out, "lorahub_generations_total", "Generation requests completed.", metrics.generations
    )
    _counter(out, "lorahub_images_total", "Images generated.", metrics.images)
    _family(
        out,
        "lorahub_generation_duration_seconds",
        "histogram",
        "Worker time per generation request.",
    )
    out += metrics.generation_seconds.lines("lorahub_generation_duration_seconds")
    out += engine_lines(engine)
    _gauge(
        out,
        "lorahub_uptime_seconds",
        "Seconds since the server started.",
        time.time() - metrics.started,
    )
    return "\n".join(out) + "\n"


TIERED = {"hits": "lorahub_adapter_cache_hits_total", "misses": "lorahub_adapter_cache_misses_total",
          "evictions": "lorahub_adapter_evictions_total"}  # fmt: skip
ENGINE_HISTOGRAMS = {
    "swap_seconds": (
        "lorahub_swap_duration_seconds",
        "Adapter activation (swap) time per request.",
    ),
    "generation_seconds": (
        "lorahub_engine_generation_duration_seconds",
        "Engine time per generation.",
    ),
}
ENGINE_COUNTERS = frozenset(
    {"requests", "requests_failed", "images", "swaps", "fuses", "unfuses", "loads", "compiles"}
)


def engine_lines(stats: Mapping[str, Any]) -> list[str]:
    """The engine's numbers: cache hits/misses/evictions by tier, swaps, histograms, other gauges."""
    out: list[str] = []
    tiered: dict[str, list[tuple[str, float]]] = {}
    empty = {"buckets": [], "sum": 0.0, "count": 0}
    stats = {**{k: empty for k in ENGINE_HISTOGRAMS}, **stats}
    for key, value in sorted(stats.items()):
        if isinstance(value, Mapping) and key in ENGINE_HISTOGRAMS and "buckets" in value:
            name, help_text = ENGINE_HISTOGRAMS[key]
            _family(out, name, "histogram", help_text)
            out += histogram_lines(name, value)
        elif not _is_number(value):
            continue
        elif (tier := _tier_kind(key)) is not None:
            tiered.setdefault(tier[0], []).append((tier[1], float(value)))
        elif key == "swaps":
            _counter(out, "lorahub_swaps_total", "Adapter set changes in the pipeline.", value)
        elif key in ENGINE_COUNTERS:
            _counter(out, f"lorahub_engine_{key}_total", f"Engine {key.replace('_', ' ')}.", value)
        else:
            _gauge(
                out,
                f"lorahub_engine_{_metric_name(key)}",
                f"Engine {key.replace('_', ' ')}.",
                value,
            )
    for kind, samples in sorted(tiered.items()):
        name = TIERED[kind]
        _family(
            out,
            name,
            "counter",
            f"Adapter cache {kind} by tier (resident in the pipeline, cpu memory).",
        )
        out += [f"{name}{_labels(tier=tier)} {_num(v)}" for tier, v in sorted(samples)]
    return out


def histogram_lines(name: str, data: Mapping[str, Any]) -> list[str]:
    """Lines of a histogram given as {"buckets": [[le, cumulative], ...], "sum", "count"}."""
    out = []
    for bound, count in data["buckets"]:
        le = "+Inf" if bound in ("+Inf", float("inf")) else _num(float(bound))
        out.append(f'{name}_bucket{{le="{le}"}} {int(count)}')
    if not out or 'le="+Inf"' not in out[-1]:
        out.append(f'{name}_bucket{{le="+Inf"}} {int(data.get("count", 0))}')
    out.append(f"{name}_sum {_num(float(data.get('sum', 0.0)))}")
    out.append(f"{name}_count {int(data.get('count', 0))}")
    return out


def _tier_kind(key: str) -> tuple[str, str] | None:
    """("hits", "resident") for resident_hits, ("evictions", "cpu") for evictions_cpu, else None."""
    a, _, b = key.partition("_")
    if b in TIERED and a in ("resident", "cpu"):
        return b, a
    if a in TIERED and b in ("resident", "cpu"):
        return a, b
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def _gauge(out: list[str], name: str, help_text: str, value: float) -> None:
    _family(out, name, "gauge", help_text)
    out.append(f"{name} {_num(value)}")


def _counter(out: list[str], name: str, help_text: str, value: float) -> None:
    _family(out, name, "counter", help_text)
    out.append(f"{name} {_num(value)}")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    ):
        return str(int(value))
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class MetricsMiddleware:
    """Count every HTTP request by method, route template and final status."""

    def __init__(self, app: Callable, metrics: Metrics, route_of: Callable[[dict], str]):
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def tracking_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.count_request(
                scope.get("method", "?"), self.route_of(scope), status, seconds
            )
