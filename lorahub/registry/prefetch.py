"""Reading many files' facts in worker processes while the scan writes their rows, in order.

Parsing a header is pure Python (a few ms for a file of a few hundred modules) and hashing is
I/O plus hashlib, so a big scan is CPU-bound on one core. Above `PARALLEL_MIN` files to read,
worker processes (spawned: safe in a threaded server, and no torch is imported on this path)
read headers and hashes; the scanning process still does every database write, one file per
transaction, so a killed scan leaves the registry as consistent as a sequential one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path

from lorahub.errors import LorahubError
from lorahub.registry.adapters import FileFacts, read_facts

PARALLEL_MIN = 256  # files to read before worker processes are worth their start (~0.5 s)
MAX_WORKERS = 8
WORKERS_ENV = "LORAHUB_SCAN_WORKERS"  # 0 or 1: read in the scanning process


def usable_cores() -> int:
    """The cores this process may run on (capped at MAX_WORKERS)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, MAX_WORKERS)


def default_workers(fallback: int) -> int:
    """$LORAHUB_SCAN_WORKERS when set, else `fallback`. The CLI falls back to the usable cores;
    a library call to 0, since spawned workers re-import the caller's `__main__` (a script
    without an `if __name__ == "__main__":` guard would run again in each)."""
    if os.environ.get(WORKERS_ENV, "").strip():
        try:
            return max(0, int(os.environ[WORKERS_ENV]))
        except ValueError:
            raise LorahubError(f"{WORKERS_ENV} must be a whole number") from None
    return fallback


def _read(path: Path, hash: bool, trust_pickle: bool) -> tuple[FileFacts | None, Exception | None]:
    """Worker side: the facts, or the exception to raise in the scanning process."""
    try:
        return read_facts(path, hash=hash, trust_pickle=trust_pickle), None
    except Exception as exc:  # re-raised where the sequential scan would have raised it
        try:
            import pickle

            pickle.dumps(exc)
            return None, exc
        except Exception:
            return None, LorahubError(f"{path}: {type(exc).__name__}: {exc}")


class FactsReader:
    """`read(path)` gives what `read_facts` would, read ahead by workers when many are due."""

    def __init__(self, paths: list[Path], *, hash: bool, trust_pickle: bool, workers: int | None):
        self.hash, self.trust_pickle = hash, trust_pickle
        n = default_workers(0) if workers is None else workers
        self._pool: Executor | None = None
        self._ahead: Iterator[tuple[Path, tuple[FileFacts | None, Exception | None]]] = iter(())
        self._ready: dict[Path, tuple[FileFacts | None, Exception | None]] = {}
        if n >= 2 and len(paths) >= PARALLEL_MIN:
            self._pool = ProcessPoolExecutor(min(n, len(paths)), mp_context=get_context("spawn"))
            results = self._pool.map(_read, paths, repeat(hash), repeat(trust_pickle), chunksize=16)
            self._ahead = zip(paths, results, strict=True)

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def read(self, path: Path) -> FileFacts:
        if self._pool is not None or self._ready:
            while self._pool is not None and path not in self._ready:
                try:
                    ahead = next(self._ahead, None)
                except BrokenProcessPool:  # a worker could not start or died: read here instead
                    self.close()
                    break
                if ahead is None:
                    break
                self._ready[ahead[0]] = ahead[1]
            if path in self._ready:
                facts, exc = self._ready.pop(path)
                if exc is not None:
                    raise exc
                assert facts is not None
                return facts
        return read_facts(path, hash=self.hash, trust_pickle=self.trust_pickle)

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool, self._ahead = self._pool, None, iter(())
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FactsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
