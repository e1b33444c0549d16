"""`registry.db.example`: a registry built from the migrations (and, by default, the demo adapters)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from lorahub.fileio import atomic_path
from lorahub.registry.registry import Registry

ExampleHook = Callable[[Registry, Path], None]


def demo_adapters(registry: Registry, workdir: Path) -> None:
    """Write the demo's example adapters for the tiny base into `workdir` and register them."""
    from lorahub.examples import DEMO_ADAPTERS, write_example_adapter

    for spec in DEMO_ADAPTERS:
        path = write_example_adapter("tiny", workdir / f"{spec.name}.safetensors", spec)
        registry.add_adapter(
            path, name=spec.name, tags=["example"], description=spec.description,
            trigger_words=list(spec.trigger_words),
        )  # fmt: skip


def write_example(
    dest: str | os.PathLike[str], example_adapters: ExampleHook | None = demo_adapters
) -> Path:
    """Build a fresh registry at `dest` (atomically): every migration, then `example_adapters`."""
    dest = Path(dest)
    with atomic_path(dest, suffix=".db") as tmp, tempfile.TemporaryDirectory() as work:
        tmp.unlink()
        registry = Registry(tmp)
        if example_adapters is not None:
            example_adapters(registry, Path(work))
        registry.close()
        conn = sqlite3.connect(tmp)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("VACUUM")
        conn.close()
    return dest


def schema_of(path: str | os.PathLike[str]) -> list[tuple[str, str, str]]:
    """(type, name, sql) of every schema object, plus the applied migration names: what must match."""
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        applied = conn.execute(
            "SELECT 'migration', name, migration_set FROM _sqlite_migrations ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [*rows, *applied]
