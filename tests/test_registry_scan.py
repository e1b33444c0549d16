"""Scanning: incremental by size+mtime, duplicates by tensor hash, errors, moves; hashes; verify."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import lorahub.formats
from lorahub.registry import Registry
from tests.test_registry import write_lora


@pytest.fixture
def reg(lorahub_home: Path) -> Registry:
    registry = Registry()
    yield registry
    registry.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the reads the registry makes through lorahub.formats."""
    counts = {"inspect": 0, "hash": 0}
    inspect, hash_file = lorahub.formats.inspect_file, lorahub.formats.hash_file

    def counting_inspect(*a, **k):
        counts["inspect"] += 1
        return inspect(*a, **k)

    def counting_hash(*a, **k):
        counts["hash"] += 1
        return hash_file(*a, **k)

    monkeypatch.setattr(lorahub.formats, "inspect_file", counting_inspect)
    monkeypatch.setattr(lorahub.formats, "hash_file", counting_hash)
    return counts


def _names(items) -> list[str]:
    return sorted(i.name for i in items)


def test_incremental_scan(reg: Registry, tmp_path: Path, calls: dict[str, int]) -> None:
    lib = tmp_path / "lib"
    for i in range(4):
        write_lora(lib / f"sub{i % 2}" / f"l{i}.safetensors", i)
    (lib / ".hidden").mkdir()
    write_lora(lib / ".hidden" / "secret.safetensors", 9)
    (lib / "notes.txt").write_text("not an adapter")
    first = reg.scan(lib)
    assert _names(first.new) == ["l0", "l1", "l2", "l3"] and calls == {"inspect": 4, "hash": 4}
    calls.update(inspect=0, hash=0)
    second = reg.scan(lib)
    assert len(second.unchanged) == 4 and not second.new and not second.changed
    assert calls == {"inspect": 0, "hash": 0} and second.bytes_read == 0  # nothing re-read
    reg.tag("l1", ["kept"])
    write_lora(lib / "sub1" / "l1.safetensors", 42, rank=8)
    os.utime(lib / "sub1" / "l1.safetensors", ns=(1, 1))
    (lib / "sub0" / "l0.safetensors").unlink()
    third = reg.scan(lib)
    assert (
        _names(third.changed) == ["l1"]
        and _names(third.missing) == ["l0"]
        and calls["inspect"] == 1
    )
    l1 = reg.get_adapter("l1")
    assert l1.rank == 8 and l1.tags == ("kept",)  # refreshed, identity kept
    assert reg.count_adapters() == 4  # missing files are reported, not forgotten


def test_scan_duplicates_errors_and_names(reg: Registry, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_lora(lib / "orig.safetensors", 5)
    write_lora(lib / "copy.safetensors", 5, metadata={"ss_output_name": "another name"})
    write_lora(lib / "a" / "same.safetensors", 6)
    write_lora(lib / "b" / "same.safetensors", 7)
    (lib / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    report = reg.scan(lib)
    assert len(report.duplicates) == 1
    assert sorted(i.name for i in report.duplicates[0]) == ["copy", "orig"]
    assert [Path(e.path).name for e in report.errors] == ["broken.safetensors"] and report.errors[
        0
    ].detail
    assert _names(report.new) == ["copy", "orig", "same", "same-2"]  # scans pick free names


def test_scan_detects_moves(reg: Registry, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_lora(lib / "old" / "style.safetensors", 1)
    reg.scan(lib)
    reg.tag("style", ["mine"])
    before = reg.get_adapter("style")
    (lib / "new").mkdir()
    shutil.move(lib / "old" / "style.safetensors", lib / "new" / "renamed.safetensors")
    report = reg.scan(lib)
    assert [i.name for i in report.moved] == ["style"] and not report.new and not report.missing
    after = reg.get_adapter("style")
    assert (
        after.id == before.id
        and after.tags == ("mine",)
        and after.path.endswith("renamed.safetensors")
    )


def test_no_hash_scan_then_hashes(reg: Registry, tmp_path: Path, calls: dict[str, int]) -> None:
    lib = tmp_path / "lib"
    files = [write_lora(lib / f"big{i}.safetensors", i, rank=64, modules=4) for i in range(3)]
    report = reg.scan(lib, hash=False)
    total = sum(f.stat().st_size for f in files)
    assert (
        calls["hash"] == 0 and report.bytes_total == total and 0 < report.bytes_read < 0.05 * total
    )
    assert all(r.sha256 is None for r in reg.list_adapters())
    assert reg.compute_missing_hashes() == 3 and calls["hash"] == 3
    assert all(r.autov3 and r.autov2 for r in reg.list_adapters())
    assert reg.compute_missing_hashes() == 0


def test_verify(reg: Registry, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for seed, name in enumerate(("ok", "changed", "missing", "moved")):
        write_lora(lib / f"{name}.safetensors", seed)
    reg.scan(lib)
    data = bytearray((lib / "changed.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (lib / "changed.safetensors").write_bytes(bytes(data))
    (lib / "missing.safetensors").unlink()
    (lib / "deeper").mkdir()
    shutil.move(lib / "moved.safetensors", lib / "deeper" / "moved-here.safetensors")
    report = reg.verify()
    assert [i.name for i in report.ok] == ["ok"] and [i.name for i in report.changed] == ["changed"]
    assert [i.name for i in report.missing] == ["missing"] and [i.name for i in report.moved] == [
        "moved"
    ]
    assert reg.get_adapter("moved").path == str(lib / "deeper" / "moved-here.safetensors")


def test_parallel_scan_matches_sequential(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes read the files; the rows, names, errors and duplicates are the same."""
    import lorahub.registry.prefetch as prefetch

    lib = tmp_path / "lib"
    for i in range(6):
        write_lora(lib / f"d{i % 3}" / f"l{i}.safetensors", i, rank=4 + i % 2 * 4)
    write_lora(lib / "twin.safetensors", 2)  # a duplicate of l2
    (lib / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    (lib / "old.ckpt").write_bytes(b"not read")  # untrusted pickle: skipped, never sent to a worker
    monkeypatch.setattr(prefetch, "PARALLEL_MIN", 2)
    seq = Registry(tmp_path / "seq.db")
    try:
        one = seq.scan(lib, workers=0)
        many = reg.scan(lib, workers=2)
        rows = lambda r: sorted(  # noqa: E731
            (a.name, a.path, a.rank, a.sha256, a.tensor_sha256) for a in r.list_adapters()
        )
        assert rows(seq) == rows(reg) and len(rows(reg)) == 7
        for kind in ("new", "errors", "skipped"):
            assert sorted((i.path, i.name, i.detail) for i in getattr(one, kind)) == sorted(
                (i.path, i.name, i.detail) for i in getattr(many, kind)
            ), kind
        assert [sorted(i.name for i in g) for g in many.duplicates] == [["l2", "twin"]]
        assert many.bytes_read == one.bytes_read
        again = reg.scan(lib, workers=2)  # nothing due: no workers started, nothing read
        assert len(again.unchanged) == 7 and again.bytes_read == 0
    finally:
        seq.close()


def test_reader_starts_workers_only_when_many_files_are_due(tmp_path: Path) -> None:
    from lorahub.registry.prefetch import FactsReader

    write_lora(tmp_path / "a.safetensors", 1)
    with FactsReader([tmp_path / "a.safetensors"], hash=False, trust_pickle=False, workers=8) as r:
        assert not r.parallel and r.read(tmp_path / "a.safetensors").header_bytes > 0


def test_a_broken_pool_falls_back_to_reading_here(tmp_path: Path, monkeypatch) -> None:
    """A worker that cannot start (an unguarded __main__, a killed process) costs speed, not rows."""
    from concurrent.futures.process import BrokenProcessPool

    import lorahub.registry.prefetch as prefetch

    paths = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for i, p in enumerate(paths):
        write_lora(p, i)

    def broken():
        raise BrokenProcessPool("gone")
        yield

    monkeypatch.setattr(prefetch, "PARALLEL_MIN", 2)
    with prefetch.FactsReader(paths, hash=True, trust_pickle=False, workers=2) as r:
        assert r.parallel
        r._ahead = broken()
        assert [r.read(p).columns["sha256"] for p in paths] == [
            prefetch.read_facts(p, hash=True, trust_pickle=False).columns["sha256"] for p in paths
        ]
        assert not r.parallel
