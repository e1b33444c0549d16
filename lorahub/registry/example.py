"""`registry.db.example`: a registry built from the migrations (and, by default, the demo adapters)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

from lorahub.fileio import atomic_path
from lorahub.registry.registry import Registry

ExampleHook = Callable[[Registry, Path], None]


EXAMPLE_STAMP = "2000-01-01T00:00:00.000000+00:00"  # fixed times, so the file is reproducible
EXAMPLE_MTIME = 946684800.0
EXAMPLE_DIR = "adapters"  # placeholder, relative: where the example files would lie


def demo_adapters(registry: Registry, workdir: Path) -> None:
    """A small registry that fills every table: the demo adapters, their tags, a base model row,
    lineage edges, a mix, a publication and a scan root; paths become relative placeholders."""
    from lorahub.examples import DEMO_ADAPTERS, write_example_adapter
    from lorahub.registry.records import LineageParent
    from lorahub.types import MixMember

    files = workdir / EXAMPLE_DIR
    files.mkdir()
    registry.record_model(
        "tiny",
        workdir / "models" / "tiny",
        {"note": "the embedded tiny SD1 base"},
        kind="base",
        base_family="tiny-sd1",
    )
    for spec in DEMO_ADAPTERS:
        path = write_example_adapter("tiny", files / f"{spec.name}.safetensors", spec)
        registry.add_adapter(
            path,
            name=spec.name,
            tags=["example", spec.name.removeprefix("example-")],
            description=spec.description,
            trigger_words=list(spec.trigger_words),
            source="trained",
            lineage=[
                LineageParent("model", "tiny", "trained-from"),
                LineageParent(
                    "dataset",
                    "datasets/example-captions",
                    "trained-from",
                    {"note": "a placeholder data set"},
                ),
            ],
        )
    first, second = (spec.name for spec in DEMO_ADAPTERS[:2])
    registry.create_mix(
        "example-mix",
        [MixMember(first, 0.8), MixMember(second, 0.5, te_weight=0.3)],
        description="Both demo adapters at once.",
        defaults={"prompt": "a red circle", "seed": 1, "steps": 8},
    )
    registry.record_publication(
        first,
        "your-name/example-style",
        "main",
        None,
        "https://huggingface.co/your-name/example-style",
    )
    _placeholders(registry.db, first)


def _placeholders(db: sqlite_utils.Database, first: str) -> None:
    """A scan root, relative placeholder paths and fixed times, and an example image of `first`."""
    with db.conn:
        db.execute(
            "INSERT INTO scan_roots (path, last_scan_at) VALUES (?, ?)",
            [EXAMPLE_DIR, EXAMPLE_STAMP],
        )
        db.execute(
            "UPDATE adapters SET path = ? || '/' || name || '.safetensors', mtime = ?",
            [EXAMPLE_DIR, EXAMPLE_MTIME],
        )
        db.execute("UPDATE models SET path = 'models/' || name")
        params = '{"tool": "lorahub", "prompt": "a red circle", "seed": 1, "steps": 8}'
        db.execute(
            "INSERT INTO adapter_images (adapter_id, position, file, source, tool, params, created_at)"
            " SELECT id, 0, 'example-style-0.png', 'images/example-style-0.png', 'lorahub', ?, ?"
            " FROM adapters WHERE name = ?",
            [params, EXAMPLE_STAMP, first],
        )
        _fix_times(db.conn)


def _fix_times(conn: sqlite3.Connection) -> None:
    """Every created/updated/last-scan column to EXAMPLE_STAMP."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        for column in columns:
            if column in ("created_at", "updated_at", "last_scan_at", "applied_at"):
                conn.execute(f"UPDATE {table} SET {column} = ?", [EXAMPLE_STAMP])


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


def contents_of(path: str | os.PathLike[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the full-text index's internals, ordered: what the example holds."""
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'adapters_fts%' ORDER BY name"
            )
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


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
