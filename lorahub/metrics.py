"""The numbers the engine and the server keep, and their Prometheus text (format 0.0.4).

One histogram for both: the engine reports its counters and histograms as JSON (`Engine.stats()`),
the server keeps its own request numbers, and `render` writes the whole /metrics page without a
client library.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

SWAP_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
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
    """A cumulative-bucket histogram of seconds (a value counts in every bucket whose bound it is <=)."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # per bucket, the last one past every bound
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self.sum += seconds
            self.count += 1

    def mean(self) -> float | None:
        """The mean observation, None before the first."""
        return self.sum / self.count if self.count else None

    def to_json(self) -> dict[str, Any]:
        """Cumulative counts per upper bound (last bound `+Inf`), sum and count."""
        with self._lock:
            cumulative, total = [], 0
            for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
                total += n
                cumulative.append(["+Inf" if bound == float("inf") else bound, total])
            return {"buckets": cumulative, "sum": self.sum, "count": self.count}

    def lines(self, name: str) -> list[str]:
        """The histogram as Prometheus lines named `name`."""
        return histogram_lines(name, self.to_json())


class EngineMetrics:
    """Every number `Engine.stats()` reports, updated under one lock."""

    COUNTERS = (
        "requests",
        "requests_failed",
        "images",
        "swaps",
        "resident_hits",
        "resident_misses",
        "cpu_hits",
        "cpu_misses",
        "evictions_resident",
        "evictions_cpu",
        "fuses",
        "batches",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.swap_seconds = Histogram(SWAP_BUCKETS)
        self.generation_seconds = Histogram(GENERATION_BUCKETS)  # the engine's time per generation
        # heterogeneous batching: requests and image rows per denoising loop, the worker's wait
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.batch_wait_seconds = Histogram(WAIT_BUCKETS)

    def inc(self, name: str, n: int = 1) -> None:
        """Add `n` to a counter."""
        with self.lock:
            self.counters[name] += n

    def observe(self, hist: str, seconds: float) -> None:
        """Record a value in one of the histograms (`swap_seconds`, `batch_rows`, ...)."""
        with self.lock:
            getattr(self, hist).observe(seconds)

    def to_json(self) -> dict[str, Any]:
        """A snapshot of counters and histograms."""
        with self.lock:
            return {
                **self.counters,
                "swap_seconds": self.swap_seconds.to_json(),
                "generation_seconds": self.generation_seconds.to_json(),
                "batch_requests": self.batch_requests.to_json(),
                "batch_rows": self.batch_rows.to_json(),
                "batch_wait_seconds": self.batch_wait_seconds.to_json(),
            }


class ServerMetrics:
    """What the server itself measures: requests by route and status, time per generation request."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.request_seconds = Histogram()
        # a generation request through the worker (waiting included), not the engine's time alone
        self.generation_request_seconds = Histogram()
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
        self.generation_request_seconds.observe(seconds)


def render(
    metrics: ServerMetrics, queue_depth: int, queue_limit: int, engine: Mapping[str, Any]
) -> str:
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
    out += metrics.generation_request_seconds.lines("lorahub_generation_duration_seconds")
    out += engine_lines(engine)
    _gauge(
        out,
        "lorahub_uptime_seconds",
        "Seconds since the server started.",
        time.time() - metrics.started,
    )
    return "\n".join(out) + "\n"


TIERED = {
    "hits": "lorahub_adapter_cache_hits_total",
    "misses": "lorahub_adapter_cache_misses_total",
    "evictions": "lorahub_adapter_evictions_total",
}
ENGINE_HISTOGRAMS = {
    "swap_seconds": (
        "lorahub_swap_duration_seconds",
        "Adapter activation (swap) time per request.",
    ),
    "generation_seconds": (
        "lorahub_engine_generation_duration_seconds",
        "Engine time per generation.",
    ),
    "batch_requests": ("lorahub_batch_requests", "Requests per batched denoising loop."),
    "batch_rows": ("lorahub_batch_rows", "Image rows per batched denoising loop."),
    "batch_wait_seconds": (
        "lorahub_batch_wait_seconds",
        "Time the worker waited to gather a batch.",
    ),
}
ENGINE_COUNTERS = frozenset(
    {
        "requests",
        "requests_failed",
        "images",
        "swaps",
        "fuses",
        "unfuses",
        "loads",
        "compiles",
        "batches",
    }
    | {"set_requests", "set_hits", "set_loads", "set_evictions"}
)
# Per-replica figures of an engine on Ray (`lorahub serve --ray`), labelled by replica.
REPLICA_SERIES = {
    "set_requests": ("counter", "Requests with adapters a replica received."),
    "set_hits": ("counter", "Requests whose adapter set was already resident on the replica."),
    "set_loads": ("counter", "Adapter sets a replica made resident."),
    "set_evictions": ("counter", "Adapter sets a replica let go."),
    "requests": ("counter", "Generation requests a replica ran."),
    "resident_adapters": ("gauge", "Adapters resident on a replica."),
}


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
    out += replica_lines(stats.get("replicas"))
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


def replica_lines(replicas: Any) -> list[str]:
    """`lorahub_replica_<figure>{replica="..."}` for each replica's figures (none when absent)."""
    if not isinstance(replicas, Mapping) or not replicas:
        return []
    out: list[str] = []
    for key, (kind, help_text) in REPLICA_SERIES.items():
        name = f"lorahub_replica_{key}" + ("_total" if kind == "counter" else "")
        _family(out, name, kind, help_text)
        for replica, figures in sorted(replicas.items()):
            value = figures.get(key, 0) if isinstance(figures, Mapping) else 0
            value = value if _is_number(value) else 0
            out.append(f"{name}{_labels(replica=str(replica))} {_num(value)}")
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
