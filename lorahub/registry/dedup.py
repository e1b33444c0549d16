"""Folding a duplicate adapters row into the row it duplicates (migration 0010: one row per path)."""

from __future__ import annotations

import sqlite_utils

KEPT_IF_EMPTY = ("description", "preview", "sidecar", "user_fields")


def merge_adapter_rows(db: sqlite_utils.Database, dup: int, keep: int) -> None:
    """Repoint everything that references row `dup` to `keep`, then delete `dup`.

    Tags, images and publications move (the kept row's own win on a clash), mix members and
    lineage edges are repointed, and the kept row takes the description, preview and sidecar
    fields it lacks from the duplicate."""
    db.execute(
        "INSERT OR IGNORE INTO adapter_tags (adapter_id, tag)"
        " SELECT ?, tag FROM adapter_tags WHERE adapter_id = ?",
        [keep, dup],
    )
    for table in ("adapter_images", "publications"):
        db.execute(f"UPDATE OR IGNORE {table} SET adapter_id = ? WHERE adapter_id = ?", [keep, dup])
    label = db.execute(
        "SELECT name || CASE version WHEN '' THEN '' ELSE '@' || version END FROM adapters"
        " WHERE id = ?",
        [keep],
    ).fetchone()[0]
    db.execute(
        "UPDATE mix_members SET adapter_id = ?, ref = ? WHERE adapter_id = ?", [keep, label, dup]
    )
    for end in ("child", "parent"):
        db.execute(
            f"UPDATE lineage SET {end}_id = ?, {end}_label = ?"
            f" WHERE {end}_kind = 'adapter' AND {end}_id = ?",
            [str(keep), label, str(dup)],
        )
    db.execute(
        "DELETE FROM lineage WHERE child_kind = parent_kind AND child_id = parent_id"
        " AND child_kind = 'adapter'"
    )
    sets = ", ".join(
        f"{c} = coalesce({c}, (SELECT {c} FROM adapters WHERE id = :dup))" for c in KEPT_IF_EMPTY
    )
    db.execute(f"UPDATE adapters SET {sets} WHERE id = :keep", {"dup": dup, "keep": keep})
    db.execute("DELETE FROM adapters WHERE id = ?", [dup])
