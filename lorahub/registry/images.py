"""Example images of an adapter: any number, in order, each with the recipe it carries.

Files are copied into the previews folder under their content hash (shared with previews);
the first image is the adapter's preview.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlite_utils

from lorahub.errors import InvalidInputError, NotFoundError
from lorahub.registry.db import dumps, loads, now, transaction
from lorahub.registry.records import ImageRecord

Copy = Callable[[Any], str]  # image path -> file name in the previews folder


def copy_into_previews(image_path: Any) -> str:
    """Copy an image into the previews folder under its content hash; returns the relative name."""
    import hashlib

    from lorahub import paths
    from lorahub.fileio import atomic_copy
    from lorahub.registry.adapters import check_file

    src = check_file(image_path)
    rel = hashlib.sha256(src.read_bytes()).hexdigest()[:16] + src.suffix.lower()
    if not (paths.previews_dir() / rel).exists():
        atomic_copy(src, paths.previews_dir() / rel)
    return rel


def add_images(
    db: sqlite_utils.Database, adapter_id: int, sources: Sequence[Any], copy: Copy | None = None
) -> list[ImageRecord]:
    """Append images (read and copied before the one transaction that records them)."""
    from lorahub.library.imagemeta import read_recipe

    staged = []
    for src in sources:
        recipe = read_recipe(src)  # a file that is not an image fails here, before any write
        staged.append(((copy or copy_into_previews)(src), str(src), recipe))
    with transaction(db):
        (last,) = db.execute(
            "SELECT COALESCE(MAX(position), -1) FROM adapter_images WHERE adapter_id = ?",
            [adapter_id],
        ).fetchone()
        for file, src, recipe in staged:
            taken = db.execute(
                "SELECT 1 FROM adapter_images WHERE adapter_id = ? AND file = ?", [adapter_id, file]
            ).fetchone()
            if taken:
                continue  # the same picture twice is one example
            last += 1
            db.execute(
                "INSERT INTO adapter_images (adapter_id, position, file, source, tool, params, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    adapter_id,
                    last,
                    file,
                    src,
                    recipe.tool if recipe else None,
                    dumps(recipe.to_json()) if recipe else None,
                    now(),
                ],
            )
        _sync_preview(db, adapter_id)
    return list_images(db, adapter_id)


def list_images(db: sqlite_utils.Database, adapter_id: int) -> list[ImageRecord]:
    """An adapter's images in order."""
    sql = "SELECT * FROM adapter_images WHERE adapter_id = ? ORDER BY position"
    return [_image_record(r) for r in db.query(sql, [adapter_id])]


def _image_record(row: dict[str, Any]) -> ImageRecord:
    plain = {k: row[k] for k in ("id", "position", "file", "source", "tool", "created_at")}
    return ImageRecord(**plain, params=loads(row["params"]))


def images_of(
    db: sqlite_utils.Database, adapter_ids: Sequence[int], limit: int
) -> dict[int, tuple[int, list[ImageRecord]]]:
    """For a page of adapters: each one's image count and its first `limit` images (one query)."""
    out: dict[int, tuple[int, list[ImageRecord]]] = {}
    if not adapter_ids:
        return out
    marks = ", ".join("?" for _ in adapter_ids)
    where = f"adapter_id IN ({marks})"
    sql = f"SELECT * FROM adapter_images WHERE {where} ORDER BY adapter_id, position"
    for r in db.query(sql, list(adapter_ids)):
        count, first = out.get(r["adapter_id"], (0, []))
        if len(first) < limit:
            first.append(_image_record(r))
        out[r["adapter_id"]] = (count + 1, first)
    return out


def remove_image(db: sqlite_utils.Database, adapter_id: int, which: str) -> ImageRecord:
    """Remove one image, given by its position (as listed) or its file name."""
    images = list_images(db, adapter_id)
    match = [i for i in images if which in (str(i.position), i.file)]
    if not match:
        have = ", ".join(str(i.position) for i in images) or "none"
        raise NotFoundError(f"no image {which!r} (positions: {have})")
    with transaction(db):
        db.execute("DELETE FROM adapter_images WHERE id = ?", [match[0].id])
        _sync_preview(db, adapter_id, removed=match[0].file)
    return match[0]


def _sync_preview(db: sqlite_utils.Database, adapter_id: int, removed: str | None = None) -> None:
    """The first image is the preview: set it when there is none, or when it was removed."""
    (preview,) = db.execute("SELECT preview FROM adapters WHERE id = ?", [adapter_id]).fetchone()
    first = db.execute(
        "SELECT file FROM adapter_images WHERE adapter_id = ? ORDER BY position LIMIT 1",
        [adapter_id],
    ).fetchone()
    if preview is None or preview == removed:
        db.execute(
            "UPDATE adapters SET preview = ? WHERE id = ?",
            [first[0] if first else None, adapter_id],
        )


def check_sources(sources: Sequence[Any]) -> None:
    if not sources:
        raise InvalidInputError("give at least one image")
