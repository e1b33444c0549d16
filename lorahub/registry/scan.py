"""Scanning folders incrementally, filling in hashes later, and verifying files against records."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from lorahub.errors import LorahubError, NotFoundError
from lorahub.registry.adapters import (
    LOCATION_COLUMNS,
    PICKLE_SUFFIXES,
    FileFacts,
    default_name,
    insert_row,
    is_candidate,
    registered_at,
    unique_name,
    update_row,
)
from lorahub.registry.db import now, transaction
from lorahub.registry.prefetch import FactsReader
from lorahub.registry.records import ScanItem, ScanReport, VerifyReport

Progress = Callable[..., None] | None
PICKLE_SKIPPED = "pickle file (can run code when loaded): not read; pass --trust-pickle to read it"


def walk(
    root: Path, trust_pickle: bool = False, unreadable: list[ScanItem] | None = None
) -> Iterator[Path]:
    """Candidate adapter files under `root`, sorted, skipping hidden files and folders; folders
    that cannot be listed go to `unreadable` (when given)."""

    def onerror(exc: OSError) -> None:
        if unreadable is not None:
            where = exc.filename or "?"
            unreadable.append(ScanItem(str(where), None, f"folder not read: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            path = Path(dirpath) / fn
            if not fn.startswith(".") and is_candidate(path, trust_pickle):
                yield path


def known_under(db: sqlite_utils.Database, root: Path) -> dict[str, dict[str, Any]]:
    """Registered rows whose file lies under `root`, by path."""
    prefix = str(root).rstrip(os.sep) + os.sep
    rows = db.query(
        "SELECT id, name, version, path, size, mtime, sha256, tensor_sha256 FROM adapters WHERE path >= ? AND path < ?",
        [prefix, prefix[:-1] + chr(ord(os.sep) + 1)],
    )
    return {r["path"]: r for r in rows}


def _label(row: dict[str, Any]) -> str:
    return f"{row['name']}@{row['version']}" if row["version"] else row["name"]


def scan_folder(
    db: sqlite_utils.Database,
    root: str | os.PathLike[str],
    *,
    hash: bool = True,
    trust_pickle: bool = False,
    progress: Progress = None,
    refresh_sidecars: bool = False,
    workers: int | None = None,
) -> ScanReport:
    """Register new files, refresh changed ones (by size+mtime), report the rest; one file per
    transaction. Sidecars of other tools beside each file are taken in when they changed.
    Many files to read are read by `workers` processes (default: the usable cores)."""
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise NotFoundError(f"no such folder: {base}")
    report = ScanReport(root=str(base))
    known = known_under(db, base)
    files = list(walk(base, trust_pickle=True, unreadable=report.errors))  # pickles: reported
    if progress:
        progress(0, total=len(files))
    seen: set[str] = set()
    due = [p for p in files if _needs_read(p, known.get(str(p)), trust_pickle)]
    with FactsReader(due, hash=hash, trust_pickle=trust_pickle, workers=workers) as reader:
        for path in files:
            seen.add(str(path))
            try:
                _scan_one(db, path, known.get(str(path)), report, reader, trust_pickle=trust_pickle)
                _take_sidecars(db, path, report, refresh_sidecars)
            except Exception as exc:  # one file's failure is its own line; the scan goes on
                report.errors.append(ScanItem(str(path), None, file_problem(exc)))
            if progress:
                progress(1, status=path.name)
    missing = [row for p, row in known.items() if p not in seen]
    _match_moves(db, missing, report)
    _find_duplicates(db, base, report)
    with transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO scan_roots (path, last_scan_at) VALUES (?, ?)",
            [str(base), now()],
        )
    return report


def _needs_read(path: Path, row: dict[str, Any] | None, trust_pickle: bool) -> bool:
    """New or changed (size/mtime) and readable without unpickling: its facts will be read."""
    if not trust_pickle and path.suffix.lower() in PICKLE_SUFFIXES:
        return False
    try:
        st = path.stat()
    except OSError:
        return False  # reported by _scan_one as it meets it
    return row is None or row["size"] != st.st_size or row["mtime"] != st.st_mtime


def file_problem(exc: BaseException) -> str:
    """One line for what went wrong with one file (never a traceback)."""
    if isinstance(exc, LorahubError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return f"unexpected {type(exc).__name__}: {str(exc)[:200]}"


def _scan_one(
    db: sqlite_utils.Database,
    path: Path,
    row: dict[str, Any] | None,
    report: ScanReport,
    reader: FactsReader,
    *,
    trust_pickle: bool,
) -> None:
    """Classify one file; read it only if it is new or its size/mtime changed."""
    st = path.stat()
    report.bytes_total += st.st_size
    if row is not None and row["size"] == st.st_size and row["mtime"] == st.st_mtime:
        report.unchanged.append(ScanItem(str(path), _label(row)))
        return
    if not trust_pickle and path.suffix.lower() in PICKLE_SUFFIXES:
        label = _label(row) if row is not None else None
        report.skipped.append(ScanItem(str(path), label, PICKLE_SKIPPED))
        return
    try:
        facts = reader.read(path)
    except Exception as exc:  # workers hand back what read_facts raised, of any type
        unknown = isinstance(exc, LorahubError) and "not a recognised adapter" in str(exc)
        (report.skipped if unknown else report.errors).append(
            ScanItem(str(path), None, file_problem(exc))
        )
        return
    report.bytes_read += facts.header_bytes + (st.st_size if reader.hash else 0)
    if row is not None:
        _refresh(db, row["id"], facts)
        report.changed.append(ScanItem(str(path), _label(row)))
    else:
        name, is_new = _register_new(db, path, facts)
        (report.new if is_new else report.unchanged).append(ScanItem(str(path), name))


def _take_sidecars(
    db: sqlite_utils.Database, path: Path, report: ScanReport, refresh: bool
) -> None:
    """Sidecar facts for a registered file; each problem is its own report line."""
    from lorahub.registry.sidecar_sync import sync_sidecars

    try:
        taken, problems = sync_sidecars(db, path, refresh=refresh)
    except OSError as exc:  # a sidecar vanished or became unreadable mid-scan
        taken, problems = None, [f"sidecars unreadable: {exc.strerror or exc}"]
    if taken:
        report.sidecars.append(ScanItem(str(path), None, taken))
    report.sidecars += [ScanItem(str(path), None, f"problem: {p}") for p in problems]


def _refresh(db: sqlite_utils.Database, adapter_id: int, facts: FileFacts) -> None:
    with transaction(db):
        update_row(db, adapter_id, facts.columns)


def _register_new(db: sqlite_utils.Database, path: Path, facts: FileFacts) -> tuple[str, bool]:
    """Insert a scanned file under a free name, or get the row another scan just inserted.

    (label, inserted). The check runs inside the write transaction and the UNIQUE path index
    backs it, so concurrent scans of one folder register each file once."""
    from lorahub.registry.db import dumps

    with transaction(db):
        other = registered_at(db, str(path))
        if other is not None:
            return other[1], False
        name = unique_name(db, default_name(path))
        insert_row(
            db,
            {
                **facts.columns,
                "name": name,
                "trigger_words": dumps(list(facts.trigger_words)),
                "source": "local",
            },
        )
    return name, True


def _match_moves(
    db: sqlite_utils.Database, missing: list[dict[str, Any]], report: ScanReport
) -> None:
    """A missing record whose exact file (sha256) appeared as a new file in this scan moved there."""
    new_by_hash: dict[str, ScanItem] = {}
    for new_item in report.new:
        row = db.execute(
            "SELECT id, sha256 FROM adapters WHERE path = ?", [new_item.path]
        ).fetchone()
        if row and row[1]:
            new_by_hash.setdefault(row[1], new_item)
    for old in missing:
        item: ScanItem | None = new_by_hash.pop(old["sha256"], None) if old["sha256"] else None
        if item is None:
            report.missing.append(ScanItem(old["path"], _label(old)))
            continue
        with transaction(db):
            new_row = db.execute("SELECT * FROM adapters WHERE path = ?", [item.path]).fetchone()
            cols = [d[0] for d in db.execute("SELECT * FROM adapters LIMIT 0").description]
            moved = dict(zip(cols, new_row, strict=True))
            db.execute("DELETE FROM adapters WHERE id = ?", [moved["id"]])
            update_row(
                db,
                old["id"],
                {k: moved[k] for k in LOCATION_COLUMNS},
            )
        report.new.remove(item)
        report.moved.append(ScanItem(item.path, _label(old), f"from {old['path']}"))


def _find_duplicates(db: sqlite_utils.Database, base: Path, report: ScanReport) -> None:
    """Groups of records under `base` (with any others) that share a tensor hash."""
    prefix = str(base).rstrip(os.sep) + os.sep
    rows = db.query(
        "SELECT tensor_sha256, path, name, version FROM adapters WHERE tensor_sha256 IN ("
        " SELECT tensor_sha256 FROM adapters WHERE path >= ? AND path < ? AND tensor_sha256 IS NOT NULL)"
        " ORDER BY tensor_sha256, path",
        [prefix, prefix[:-1] + chr(ord(os.sep) + 1)],
    )
    groups: dict[str, list[ScanItem]] = {}
    for r in rows:
        groups.setdefault(r["tensor_sha256"], []).append(
            ScanItem(r["path"], _label(r), r["tensor_sha256"][:12])
        )
    groups = {k: g for k, g in groups.items() if len(g) > 1}
    report.duplicates = list(groups.values())


def fill_hashes(db: sqlite_utils.Database, progress: Progress = None) -> int:
    """Hash every registered file that has no hash yet (unchanged files only); returns how many."""
    from lorahub import formats

    rows = list(
        db.query("SELECT id, path, size, mtime FROM adapters WHERE sha256 IS NULL ORDER BY id")
    )
    if progress:
        progress(0, total=len(rows))
    done = 0
    for row in rows:
        path = Path(row["path"])
        if (
            path.is_file()
            and (st := path.stat()).st_size == row["size"]
            and st.st_mtime == row["mtime"]
        ):
            h = formats.hash_file(path)
            with transaction(db):
                _set_hashes(db, row["id"], h)
            done += 1
        if progress:
            progress(1, status=path.name)
    return done


def _set_hashes(db: sqlite_utils.Database, adapter_id: int, h: Any) -> None:
    update_row(
        db,
        adapter_id,
        {
            "sha256": h.sha256,
            "autov2": h.autov2,
            "tensor_sha256": h.tensor_sha256,
            "autov3": h.autov3,
        },
    )


def verify_all(db: sqlite_utils.Database, progress: Progress = None) -> VerifyReport:
    """Re-hash every file: ok, changed, missing, or moved (found by hash under a scan root)."""
    from lorahub import formats

    report = VerifyReport()
    rows = list(
        db.query(
            "SELECT id, name, version, path, size, sha256, tensor_sha256 FROM adapters ORDER BY id"
        )
    )
    if progress:
        progress(0, total=len(rows))
    missing = []
    for row in rows:
        path = Path(row["path"])
        if not path.exists():
            missing.append(row)
        else:
            try:
                h = formats.hash_file(path)
            except Exception as exc:  # a FIFO, an unreadable file: its own line, verify goes on
                report.errors.append(ScanItem(row["path"], _label(row), file_problem(exc)))
                if progress:
                    progress(1, status=path.name)
                continue
            if row["sha256"] is None:
                with transaction(db):
                    _set_hashes(db, row["id"], h)
            if row["sha256"] in (None, h.sha256):
                report.ok.append(ScanItem(row["path"], _label(row)))
            else:
                report.changed.append(
                    ScanItem(
                        row["path"], _label(row), f"sha256 {row['sha256'][:10]} -> {h.sha256[:10]}"
                    )
                )
        if progress:
            progress(1, status=path.name)
    _find_moved(db, missing, report)
    return report


def _find_moved(
    db: sqlite_utils.Database, missing: list[dict[str, Any]], report: VerifyReport
) -> None:
    """Look for missing files under the scan roots: same size first, then the same file hash."""
    from lorahub import formats

    wanted: dict[int, list[dict[str, Any]]] = {}
    for r in missing:
        if r["sha256"]:
            wanted.setdefault(r["size"], []).append(r)
    registered = {r[0] for r in db.execute("SELECT path FROM adapters")} if wanted else set()
    found: dict[int, Path] = {}
    for root in [Path(r[0]) for r in db.execute("SELECT path FROM scan_roots")] if wanted else []:
        for path in walk(root) if root.is_dir() else []:
            try:
                if str(path) in registered or path.stat().st_size not in wanted:
                    continue
                sha = formats.hash_file(path).sha256
            except (OSError, LorahubError):
                continue  # not a file a moved adapter could be
            for r in wanted[path.stat().st_size]:
                if r["sha256"] == sha and r["id"] not in found:
                    found[r["id"]] = path
                    break
    for r in missing:
        moved_to = found.get(r["id"])
        if moved_to is None:
            report.missing.append(ScanItem(r["path"], _label(r)))
            continue
        st = moved_to.stat()
        with transaction(db):
            update_row(
                db, r["id"], {"path": str(moved_to), "size": st.st_size, "mtime": st.st_mtime}
            )
        report.moved.append(ScanItem(str(moved_to), _label(r), f"from {r['path']}"))
