"""Counters and latency histograms the engine keeps (the server renders them as Prometheus text)."""

from __future__ import annotations

import bisect
import threading
from typing import Any

SWAP_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    """A cumulative-bucket histogram of seconds."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def to_json(self) -> dict[str, Any]:
        """Cumulative counts per upper bound (last bound `+Inf`), sum and count."""
        cumulative, total = [], 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += n
            cumulative.append(["+Inf" if bound == float("inf") else bound, total])
        return {"buckets": cumulative, "sum": self.sum, "count": self.count}


class Metrics:
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
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.swap_seconds = Histogram(SWAP_BUCKETS)
        self.generation_seconds = Histogram(GEN_BUCKETS)

    def inc(self, name: str, n: int = 1) -> None:
        """Add `n` to a counter."""
        with self.lock:
            self.counters[name] += n

    def observe(self, hist: str, seconds: float) -> None:
        """Record a latency in `swap_seconds` or `generation_seconds`."""
        with self.lock:
            getattr(self, hist).observe(seconds)

    def to_json(self) -> dict[str, Any]:
        """A snapshot of counters and histograms."""
        with self.lock:
            return {
                **self.counters,
                "swap_seconds": self.swap_seconds.to_json(),
                "generation_seconds": self.generation_seconds.to_json(),
            }
