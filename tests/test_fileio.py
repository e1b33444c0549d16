"""Atomic writes: complete or absent, and ordinary file modes (not mkstemp's 0600)."""

from __future__ import annotations

import os

import pytest

from lorahub.fileio import atomic_dir, atomic_path, atomic_write_bytes


def test_atomic_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        dest = atomic_write_bytes(tmp_path / "a.bin", b"x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
