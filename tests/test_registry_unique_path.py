"""Issue 17, item 4: one path, one row, enforced by the database (migration 0010)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from lorahub.errors import AlreadyExistsError
from lorahub.registry import Registry
from lorahub.registry.db import connect, transaction
from lorahub.registry.migrations import apply_migrations


def _scan(args: tuple[str, str]) -> int:
    db_path, folder = args
    with Registry(db_path) as reg:
        return len(reg.scan(folder, hash=False).new)


def test_four_concurrent_scans_register_each_file_once(example_adapters, tmp_path) -> None:
    folder = tmp_path / "loras"
    folder.mkdir()
    src = example_adapters["example-style"].read_bytes()
    for i in range(12):
        (folder / f"style-{i:02d}.safetensors").write_bytes(src)
    db_path = str(tmp_path / "reg.db")
    Registry(db_path).close()  # migrated once, so the four start on the same schema
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        new = pool.map(_scan, [(db_path, str(folder))] * 4)
    assert sum(new) == 12  # every file is new to exactly one of the scans
    db = sqlite_utils.Database(db_path)
    rows = db.execute("SELECT path, count(*) FROM adapters GROUP BY path").fetchall()
    assert len(rows) == 12 and all(n == 1 for _, n in rows)
    names = [r[0] for r in db.execute("SELECT name FROM adapters")]
    assert not any(n.endswith("-2") for n in names), names
    with Registry(db_path) as reg:
        again = reg.scan(folder, hash=False)
    assert not again.new and len(again.unchanged) == 12
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_database_refuses_a_second_row_for_a_path(example_adapters, lorahub_home) -> None:
    path = example_adapters["example-light"]
    with Registry() as reg:
        reg.add_adapter(path, name="light")
        with pytest.raises(AlreadyExistsError, match="already registered as 'light'"):
            reg.add_adapter(path, name="other", force=True)
        assert [a.name for a in reg.list_adapters()] == ["light"]
        with pytest.raises(sqlite3.IntegrityError, match="adapters.path"):
            reg.db.execute(
                "INSERT INTO adapters (name, path, size, mtime, format, network_type,"
                " base_family, created_at, updated_at)"
                " SELECT 'raw', path, size, mtime, format, network_type, base_family, '', ''"
                " FROM adapters"
            )


def _old_registry(path: Path) -> sqlite_utils.Database:
    """A registry at migration 0009 holding three rows for one file, with things pointing at each."""
    db = connect(path)
    apply_migrations(db, stop_before="0010_one_row_per_path")
    cols = (
        "name, path, size, mtime, format, network_type, base_family, created_at, updated_at,"
        " description, sidecar"
    )
    with transaction(db):
        for i, (name, desc) in enumerate([("x", None), ("x-2", "kept text"), ("x-3", None)]):
            db.execute(
                f"INSERT INTO adapters ({cols}) VALUES (?, '/l/x.safetensors', 1, 1.0, 'kohya',"
                " 'lora', 'sd1', ?, '', ?, ?)",
                [name, f"2026-01-0{i + 1}", desc, '{"civitai": 1}' if i == 2 else None],
            )
        db.execute(
            "INSERT INTO adapters (name, path, size, mtime, format, network_type, base_family,"
            " created_at, updated_at) VALUES ('y', '/l/y.safetensors', 1, 1.0, 'kohya', 'lora',"
            " 'sd1', '', '')"
        )
        db.execute("INSERT INTO adapter_tags VALUES (1, 'a'), (2, 'a'), (2, 'b'), (3, 'c')")
        db.execute("INSERT INTO mixes (name, created_at, updated_at) VALUES ('m', '', '')")
        db.execute(
            "INSERT INTO mix_members (mix_id, position, ref, adapter_id, weight)"
            " VALUES (1, 0, 'x-3', 3, 0.5), (1, 1, 'y', 4, 1.0)"
        )
        db.execute(
            "INSERT INTO lineage (child_kind, child_id, child_label, parent_kind, parent_id,"
            " parent_label, relation, created_at) VALUES"
            " ('adapter', '4', 'y', 'adapter', '2', 'x-2', 'merge', ''),"
            " ('adapter', '3', 'x-3', 'adapter', '1', 'x', 'copy', '')"
        )
        db.execute(
            "INSERT INTO adapter_images (adapter_id, position, file, created_at)"
            " VALUES (2, 0, 'a.png', ''), (3, 0, 'a.png', ''), (3, 1, 'b.png', '')"
        )
        db.execute(
            "INSERT INTO publications (adapter_id, repo, revision, created_at)"
            " VALUES (3, 'me/x', 'main', '')"
        )
    return db


def test_migration_folds_duplicates_into_the_oldest_row(tmp_path) -> None:
    db = _old_registry(tmp_path / "old.db")
    apply_migrations(db)
    q = lambda sql: [tuple(r) for r in db.execute(sql).fetchall()]  # noqa: E731
    assert q("SELECT id, name, description, sidecar FROM adapters ORDER BY id") == [
        (1, "x", "kept text", '{"civitai": 1}'),
        (4, "y", None, None),
    ]
    assert q("SELECT adapter_id, tag FROM adapter_tags ORDER BY tag") == [
        (1, "a"),
        (1, "b"),
        (1, "c"),
    ]
    assert q("SELECT ref, adapter_id FROM mix_members ORDER BY position") == [("x", 1), ("y", 4)]
    assert q("SELECT child_id, parent_id, parent_label FROM lineage") == [("4", "1", "x")]
    assert q("SELECT adapter_id, file FROM adapter_images ORDER BY file") == [
        (1, "a.png"),
        (1, "b.png"),
    ]
    assert q("SELECT adapter_id, repo FROM publications") == [(1, "me/x")]
    assert q("SELECT rowid FROM adapters_fts ORDER BY rowid") == [(1,), (4,)]
    assert q("SELECT tags FROM adapters_fts WHERE rowid = 1")[0][0].split() == ["a", "b", "c"]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not db.execute("PRAGMA foreign_key_check").fetchall()
    with pytest.raises(sqlite3.IntegrityError, match="adapters.path"):
        db.execute(
            "INSERT INTO adapters (name, path, size, mtime, format, network_type, base_family,"
            " created_at, updated_at) VALUES ('z', '/l/y.safetensors', 1, 1.0, 'k', 'l', 's', '', '')"
        )
