"""Lineage edges, Hub publications and full models (the rows that point between things)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlite_utils

from lorahub.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from lorahub.registry.db import dumps, loads, now, transaction
from lorahub.registry.queries import resolve_id
from lorahub.registry.records import (
    LINEAGE_KINDS,
    RELATIONS,
    LineageEdge,
    ModelRecord,
    PublicationRecord,
)
from lorahub.types import check_name


def check_kind_relation(kind: str, relation: str | None = None) -> None:
    """Refuse an unknown lineage kind or relation."""
    if kind not in LINEAGE_KINDS:
        raise InvalidInputError(f"invalid lineage kind {kind!r}: use {', '.join(LINEAGE_KINDS)}")
    if relation is not None and relation not in RELATIONS:
        raise InvalidInputError(
            f"invalid lineage relation {relation!r}: use {', '.join(RELATIONS)}"
        )


def resolve_endpoint(db: sqlite_utils.Database, kind: str, ref: str | int) -> tuple[str, str]:
    """(stored id, label) of one end of an edge: adapters and models by id, others by their text."""
    check_kind_relation(kind)
    if kind == "adapter":
        adapter_id = int(ref) if isinstance(ref, int) else resolve_id(db, ref)
        row = db.execute(
            "SELECT name || CASE version WHEN '' THEN '' ELSE '@' || version END FROM adapters WHERE id = ?",
            [adapter_id],
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no adapter with id {adapter_id}")
        return str(adapter_id), row[0]
    if kind == "model":
        model = find_model(db, ref)
        return str(model.id), model.name
    text = str(ref).strip()
    if not text:
        raise InvalidInputError(f"empty {kind} reference in lineage")
    return text, text


def insert_edge(
    db: sqlite_utils.Database,
    child: tuple[str, str | int],
    parent: tuple[str, str | int],
    relation: str,
    details: dict[str, Any] | None = None,
) -> LineageEdge:
    """Insert one lineage row (inside the caller's transaction, or its own)."""
    check_kind_relation(child[0], relation)
    child_id, child_label = resolve_endpoint(db, *child)
    parent_id, parent_label = resolve_endpoint(db, *parent)
    with transaction(db):
        cur = db.execute(
            "INSERT INTO lineage (child_kind, child_id, child_label, parent_kind, parent_id, parent_label,"
            " relation, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                child[0],
                child_id,
                child_label,
                parent[0],
                parent_id,
                parent_label,
                relation,
                dumps(details or {}),
                now(),
            ],
        )
    return edges(db, "id = ?", [cur.lastrowid])[0]


def edges(db: sqlite_utils.Database, where: str, params: list[Any]) -> list[LineageEdge]:
    """Lineage rows matching a WHERE clause, oldest first."""
    rows = db.query(f"SELECT * FROM lineage WHERE {where} ORDER BY id", params)
    return [
        LineageEdge(
            id=r["id"],
            child_kind=r["child_kind"],
            child_id=r["child_id"],
            child_label=r["child_label"],
            parent_kind=r["parent_kind"],
            parent_id=r["parent_id"],
            parent_label=r["parent_label"],
            relation=r["relation"],
            details=loads(r["details"], {}),
            created_at=r["created_at"],
        )
        for r in rows
    ]


def lineage_of(db: sqlite_utils.Database, kind: str, ident: str) -> list[LineageEdge]:
    """Edges where (kind, ident) is the child (its parents) or the parent (its children)."""
    return edges(
        db,
        "(child_kind = ? AND child_id = ?) OR (parent_kind = ? AND parent_id = ?)",
        [kind, ident, kind, ident],
    )


def insert_publication(
    db: sqlite_utils.Database,
    owner: tuple[str, int],
    repo: str,
    revision: str,
    commit_sha: str | None,
    url: str | None,
) -> None:
    """Record a push of an adapter or mix; the same commit recorded twice stays one row."""
    column = {"adapter": "adapter_id", "mix": "mix_id"}[owner[0]]
    if not repo or "/" not in repo:
        raise InvalidInputError(f"invalid Hub repo {repo!r}: use owner/name")
    with transaction(db):
        db.execute(
            f"INSERT OR IGNORE INTO publications ({column}, repo, revision, commit_sha, url, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [owner[1], repo, revision or "main", commit_sha, url, now()],
        )


def select_publications(
    db: sqlite_utils.Database, column: str, ident: int
) -> list[PublicationRecord]:
    """Publications of one adapter or mix, oldest first."""
    rows = db.query(
        f"SELECT repo, revision, commit_sha, url, created_at FROM publications WHERE {column} = ? ORDER BY id",
        [ident],
    )
    return [PublicationRecord(**r) for r in rows]


def _model(row: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        id=row["id"],
        name=row["name"],
        path=row["path"],
        kind=row["kind"],
        base_family=row["base_family"],
        details=loads(row["details"], {}),
        created_at=row["created_at"],
    )


def find_model(db: sqlite_utils.Database, ref: str | int) -> ModelRecord:
    """A model by name or id."""
    if isinstance(ref, int) or str(ref).isdigit():
        rows = list(db.query("SELECT * FROM models WHERE id = ? OR name = ?", [int(ref), str(ref)]))
    else:
        rows = list(db.query("SELECT * FROM models WHERE name = ?", [ref]))
    if not rows:
        raise NotFoundError(f"no model named {ref!r}")
    return _model(rows[0])


def upsert_model(
    db: sqlite_utils.Database,
    name: str,
    path: str | Path,
    details: dict[str, Any] | None,
    *,
    kind: str = "fused",
    base_family: str | None = None,
    force: bool = False,
) -> ModelRecord:
    """Record a full model (fused pipeline, base); an existing name needs `force`."""
    check_name(name, "model name")
    stamp = now()
    values = [
        str(Path(path).expanduser().resolve()),
        kind,
        base_family,
        dumps(details or {}),
        stamp,
    ]
    with transaction(db):
        exists = db.execute("SELECT id FROM models WHERE name = ?", [name]).fetchone()
        if exists and not force:
            raise AlreadyExistsError(f"model {name!r} exists (use --force to replace it)")
        if exists:
            db.execute(
                "UPDATE models SET path = ?, kind = ?, base_family = ?, details = ?, updated_at = ? WHERE id = ?",
                [*values, exists[0]],
            )
        else:
            db.execute(
                "INSERT INTO models (name, path, kind, base_family, details, updated_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [name, *values, stamp],
            )
    return find_model(db, name)


def list_models(db: sqlite_utils.Database) -> list[ModelRecord]:
    """Every recorded model, by name."""
    return [_model(r) for r in db.query("SELECT * FROM models ORDER BY name")]
