"""Issue 17, item 8: `-o FILE --force` never replaces another adapter's file or a device node; a
full disk is one line and leaves no file or empty store folder behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lorahub.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str):
    from lorahub.cli import main

    return CliRunner().invoke(main, list(args))


@pytest.fixture
def two(example_adapters, lorahub_home, tmp_path) -> dict[str, Path]:
    out = {}
    with Registry() as reg:
        for name, src in (("a", "example-style"), ("b", "example-light")):
            out[name] = tmp_path / f"{name}.safetensors"
            out[name].write_bytes(example_adapters[src].read_bytes())
            reg.add_adapter(out[name], name=name)
    return out


def test_force_never_replaces_another_adapters_file(two) -> None:
    before = two["b"].read_bytes()
    res = _cli("export", "a", "--format", "kohya", "-o", str(two["b"]), "--force")
    assert res.exit_code == 1 and "registered adapter 'b'" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and two["b"].read_bytes() == before


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_force_never_replaces_a_device_node(two) -> None:
    res = _cli("export", "a", "--format", "kohya", "-o", "/dev/null", "--force")
    assert res.exit_code == 1 and "not a regular file" in res.output, res.output
    assert Path("/dev/null").is_char_device()


def _small_files() -> None:
    """In the child: writes past 70 kB fail with EFBIG (as a full disk fails with ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (70_000, 70_000))


@pytest.mark.parametrize("where", [["--name", "big"], ["-o", "new/dir/out.safetensors"]])
def test_a_failed_write_is_one_line_and_leaves_nothing(two, lorahub_home, tmp_path, where) -> None:
    assert two["a"].stat().st_size > 70_000
    before = sorted(p for p in lorahub_home.rglob("*"))
    res = subprocess.run(
        [sys.executable, "-m", "lorahub", "export", "a", "--format", "kohya", *where],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=_small_files,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "cannot write" in res.stderr and "File too large" in res.stderr
    assert sorted(p for p in lorahub_home.rglob("*")) == before
    assert not (tmp_path / "new").exists()
