"""Benchmarks run in CI only in their quick smoke mode: they must keep working, not be fast."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


NO_RAY = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason='ray_affinity.py needs Ray Serve (pip install "lorahub[ray]"); CI installs it',
)


@pytest.mark.parametrize(
    "script",
    [
        "registry.py",
        "merge.py",
        "swap.py",
        "train.py",
        "draws.py",
        "batching.py",
        "search.py",
        pytest.param("ray_affinity.py", marks=NO_RAY),
    ],
)
def test_benchmark_smoke(script, tmp_path):
    env = {**os.environ, "LORAHUB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip(), "a benchmark prints its figures"
