"""Taking in what other tools' sidecar files say about a registered file (during `scan`).

Facts are kept with the sidecar they came from (`adapters.sidecar`); trigger words and the
description fill the record unless the user set them in lorahub (`adapters.user_fields`);
preview images become example images. A sidecar is re-read only when it changed, or always with
`refresh`. Nothing here stops a scan: every problem is one line in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlite_utils

from lorahub.errors import LorahubError
from lorahub.registry.db import dumps, loads, transaction


def sync_sidecars(
    db: sqlite_utils.Database, path: Path, *, refresh: bool = False
) -> tuple[str | None, list[str]]:
    """(what was taken in or None, problems) for the registered file at `path`."""
    from lorahub.library.sidecars import (
        family_of_claim,
        preview_files,
        read_sidecars,
        sidecar_files,
    )

    row = db.execute(
        "SELECT id, sha256, base_family, sidecar, user_fields FROM adapters WHERE path = ?",
        [str(path)],
    ).fetchone()
    if row is None:
        return None, []
    adapter_id, sha256, family, old, user = row
    found = sidecar_files(path) + preview_files(path)
    signature = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in found)
    old = loads(old) or {}
    if not found and not old or (not refresh and old.get("signature") == signature):
        return None, []
    facts = read_sidecars(path, sha256)
    record = {**facts.to_json(), "signature": signature}
    claimed = family_of_claim(facts.get("base_model"))
    if claimed and family not in (None, "unknown") and claimed != family:
        record["conflict"] = (
            f"{facts.values['base_model'][1]} says {facts.get('base_model')} ({claimed}); "
            f"the file's shapes say {family}, and they win"
        )
        facts.problems.append(record["conflict"])
    user_set = set(loads(user) or [])
    columns: dict[str, Any] = {"sidecar": dumps(record)}
    if facts.get("description") and "description" not in user_set:
        columns["description"] = facts.get("description")
    if facts.get("trigger_words") and "trigger_words" not in user_set:
        columns["trigger_words"] = dumps(facts.get("trigger_words"))
    with transaction(db):
        sets = ", ".join(f"{k} = ?" for k in columns)
        db.execute(f"UPDATE adapters SET {sets} WHERE id = ?", [*columns.values(), adapter_id])
    problems = list(facts.problems)
    if facts.previews:
        problems += _add_previews(db, adapter_id, facts.previews)
    taken = sorted(facts.values)
    summary = (
        f"from {', '.join(p.name for p in facts.files)}: {', '.join(taken)}" if taken else None
    )
    return summary, problems


def _add_previews(db: sqlite_utils.Database, adapter_id: int, previews: list[Path]) -> list[str]:
    from lorahub.registry.images import add_images

    problems = []
    for image in previews:  # one by one: a broken preview does not keep the others out
        try:
            add_images(db, adapter_id, [image])
        except LorahubError as exc:
            problems.append(f"{image.name}: {exc}")
    return problems
