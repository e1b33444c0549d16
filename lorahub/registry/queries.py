"""Reading adapters: rows to records, reference resolution, filtered listing."""

from __future__ import annotations

import json
import re
from typing import Any

import sqlite_utils

from lorahub.errors import InvalidInputError, NotFoundError
from lorahub.registry.db import loads
from lorahub.registry.records import AdapterRecord, PublicationRecord
from lorahub.types import parse_ref

HEX_RE = re.compile(r"^[0-9a-fA-F]{8,64}$")
SORTS = {
    "name": "a.name ASC, a.version ASC",
    "created": "a.created_at DESC, a.id DESC",
    "size": "a.size DESC, a.name ASC",
    "rank": "a.rank DESC, a.name ASC",
}
_EXTRA = (
    "(SELECT json_group_array(tag) FROM (SELECT tag FROM adapter_tags t"
    " WHERE t.adapter_id = a.id ORDER BY tag)) AS tags_json,"
    " (SELECT json_group_array(json_object('repo', repo, 'revision', revision,"
    " 'commit_sha', commit_sha, 'url', url, 'created_at', created_at))"
    " FROM publications p WHERE p.adapter_id = a.id) AS pubs_json"
)


def _columns(db: sqlite_utils.Database, with_metadata: bool) -> str:
    """The SELECT list for adapter records (the raw metadata only when asked: it can be large)."""
    names = [r[1] for r in db.execute("PRAGMA table_info(adapters)").fetchall()]
    cols = ", ".join(f"a.{n}" for n in names if with_metadata or n != "metadata")
    return f"{cols}, {_EXTRA}"


def row_to_record(row: dict[str, Any]) -> AdapterRecord:
    """Build an AdapterRecord from a row selected with `_columns`."""
    pubs = [PublicationRecord(**p) for p in json.loads(row.get("pubs_json") or "[]")]
    return AdapterRecord(
        id=row["id"],
        name=row["name"],
        version=row["version"] or None,
        path=row["path"],
        size=row["size"],
        mtime=row["mtime"],
        sha256=row["sha256"],
        autov2=row["autov2"],
        tensor_sha256=row["tensor_sha256"],
        autov3=row["autov3"],
        format=row["format"],
        network_type=row["network_type"],
        base_family=row["base_family"],
        base_evidence=tuple(loads(row["base_evidence"], [])),
        base_conflict=row["base_conflict"],
        components=tuple(loads(row["components"], [])),
        rank=row["rank"],
        rank_min=row["rank_min"],
        rank_max=row["rank_max"],
        rank_summary=loads(row["rank_summary"], {}),
        alpha=row["alpha"],
        dtype=row["dtype"],
        param_count=row["param_count"],
        module_count=row["module_count"],
        targets=tuple(loads(row["targets"], [])),
        trigger_words=tuple(loads(row["trigger_words"], [])),
        description=row["description"],
        source=row["source"],
        managed=bool(row["managed"]),
        summary=loads(row["summary"], {}),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        preview=row.get("preview"),
        sidecar=loads(row.get("sidecar")),
        tags=tuple(json.loads(row.get("tags_json") or "[]")),
        publications=tuple(sorted(pubs, key=lambda p: p.created_at)),
        metadata=loads(row["metadata"]) if "metadata" in row else None,
    )


def select_records(
    db: sqlite_utils.Database,
    where: str,
    params: list[Any],
    *,
    order: str = "a.id",
    with_metadata: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[AdapterRecord]:
    """Records matching a WHERE clause over `adapters a` (a page of them with limit/offset)."""
    sql = f"SELECT {_columns(db, with_metadata)} FROM adapters a WHERE {where} ORDER BY {order}"
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        params = [*params, -1 if limit is None else int(limit), int(offset)]
    return [row_to_record(r) for r in db.query(sql, params)]


def find_ids(db: sqlite_utils.Database, ref: str) -> list[int]:
    """Adapter ids a reference could mean: NAME@VERSION, NAME (newest), or a hash prefix."""
    text = ref.strip()
    parsed = parse_ref(text)
    if parsed.version is not None:
        row = db.execute(
            "SELECT id FROM adapters WHERE name = ? AND version = ?", [parsed.name, parsed.version]
        ).fetchone()
        return [row[0]] if row else []
    row = db.execute(
        "SELECT id FROM adapters WHERE name = ? ORDER BY id DESC LIMIT 1", [parsed.name]
    ).fetchone()
    if not HEX_RE.fullmatch(text):
        return [row[0]] if row else []
    low, high = text.lower(), text.lower() + "g"
    rows = db.execute(
        "SELECT id FROM adapters WHERE (sha256 >= ? AND sha256 < ?) OR (tensor_sha256 >= ? AND tensor_sha256 < ?) ORDER BY id",
        [low, high, low, high],
    ).fetchall()
    hashed = [r[0] for r in rows]
    if row is None:
        return hashed
    # a name that is also another adapter's hash prefix (only older registries allow such
    # names): ambiguous, never silently the name
    return [row[0], *(i for i in hashed if i != row[0])]


def resolve_id(db: sqlite_utils.Database, ref: str) -> int:
    """The one adapter id `ref` names; NotFoundError or an ambiguity error otherwise."""
    ids = find_ids(db, ref)
    if not ids:
        raise NotFoundError(f"no adapter matches {ref!r}")
    if len(ids) > 1:
        names = [
            r["ref"]
            for r in db.query(
                "SELECT name || CASE version WHEN '' THEN '' ELSE '@' || version END AS ref"
                f" FROM adapters WHERE id IN ({','.join('?' * len(ids[:5]))})",
                ids[:5],
            )
        ]
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        raise InvalidInputError(
            f"reference {ref!r} is ambiguous: {', '.join(names)}{more}; give more hash digits or a name"
        )
    return ids[0]


def get_record(
    db: sqlite_utils.Database, adapter_id: int, with_metadata: bool = True
) -> AdapterRecord:
    """The record with this id."""
    records = select_records(db, "a.id = ?", [adapter_id], with_metadata=with_metadata)
    if not records:
        raise NotFoundError(f"no adapter with id {adapter_id}")
    return records[0]


def fts_query(text: str) -> str:
    """A safe FTS5 query: every word must match, as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        raise InvalidInputError(f"search {text!r} has no words to look for")
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


def list_where(
    *,
    tags: tuple[str, ...] | list[str] = (),
    base: str | None = None,
    format: str | None = None,
    min_rank: int | None = None,
    max_rank: int | None = None,
    search: str | None = None,
    published: bool | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and parameters of a filtered listing."""
    clauses: list[str] = ["1"]
    params: list[Any] = []
    for tag in tags:
        clauses.append("a.id IN (SELECT adapter_id FROM adapter_tags WHERE tag = ?)")
        params.append(tag)
    for column, value in (("base_family", base), ("format", format)):
        if value is not None:
            clauses.append(f"a.{column} = ?")
            params.append(value)
    if min_rank is not None:
        clauses.append("a.rank >= ?")
        params.append(int(min_rank))
    if max_rank is not None:
        clauses.append("a.rank <= ?")
        params.append(int(max_rank))
    if search:
        clauses.append("a.id IN (SELECT rowid FROM adapters_fts WHERE adapters_fts MATCH ?)")
        params.append(fts_query(search))
    if published is not None:
        neg = "" if published else "NOT "
        clauses.append(f"{neg}EXISTS (SELECT 1 FROM publications p WHERE p.adapter_id = a.id)")
    return " AND ".join(clauses), params


def sort_clause(sort: str) -> str:
    """ORDER BY text for a sort key (name ascending; created, size, rank descending)."""
    if sort not in SORTS:
        raise InvalidInputError(f"unknown sort {sort!r}: use {', '.join(SORTS)}")
    return SORTS[sort]
