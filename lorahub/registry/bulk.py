"""Bulk changes over the adapters a filter selects (the filters of `lorahub list`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from lorahub.errors import InvalidInputError
from lorahub.registry import adapters as A
from lorahub.registry import queries as Q
from lorahub.registry.db import transaction

# --where KEY=VALUE -> list_adapters keyword (the `list` options, one spelling each)
WHERE_KEYS = {
    "tag": "tags",
    "base": "base",
    "format": "format",
    "min-rank": "min_rank",
    "max-rank": "max_rank",
    "q": "search",
    "search": "search",
    "published": "published",
}


@dataclass(frozen=True)
class TagChange:
    """One adapter a bulk tag/untag touches: its tags before and after."""

    ref: str
    before: tuple[str, ...]
    after: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "before": list(self.before), "after": list(self.after)}


def parse_where(text: str) -> dict[str, Any]:
    """`base=sdxl tag=style min-rank=8` (spaces or commas) -> `list_adapters` filters."""
    filters: dict[str, Any] = {}
    for term in text.replace(",", " ").split():
        key, eq, value = term.partition("=")
        if not eq or key not in WHERE_KEYS or not value:
            raise InvalidInputError(
                f"--where term {term!r}: use KEY=VALUE with KEY one of {', '.join(WHERE_KEYS)}"
            )
        name = WHERE_KEYS[key]
        if name == "tags":
            filters.setdefault("tags", []).append(value)
        elif name in ("min_rank", "max_rank"):
            if not value.isdigit():
                raise InvalidInputError(f"--where {key} needs a whole number, not {value!r}")
            filters[name] = int(value)
        elif name == "published":
            if value not in ("true", "false"):
                raise InvalidInputError(f"--where published=true|false, not {value!r}")
            filters[name] = value == "true"
        else:
            filters[name] = value
    if not filters:
        raise InvalidInputError("--where needs at least one KEY=VALUE filter")
    return filters


def bulk_tags(
    db: sqlite_utils.Database,
    filters: dict[str, Any],
    *,
    add: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
    dry_run: bool = False,
) -> list[TagChange]:
    """Add/remove tags on every adapter the filters select, in one transaction; the changes."""
    add = tuple(A.check_tag(t) for t in add)
    where, params = Q.list_where(**filters)
    changes = []
    with transaction(db):
        for record in Q.select_records(db, where, params, order=Q.sort_clause("name")):
            before = tuple(record.tags)
            after = tuple(sorted((set(before) | set(add)) - set(remove)))
            if set(after) == set(before):
                continue
            changes.append(TagChange(str(record.ref), before, after))
            if not dry_run:
                A.add_tags(db, record.id, add)
                A.remove_tags(db, record.id, remove)
    return changes
