"""Writing adapters: read a file into columns, insert/update rows with tags, rename rules."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from lorahub.errors import AlreadyExistsError, BadFileError, InvalidInputError, NotFoundError
from lorahub.fileio import atomic_copy
from lorahub.registry.db import dumps, now
from lorahub.registry.records import SOURCES, LineageParent
from lorahub.types import check_name

TAG_RE = re.compile(r"[^\s,\-\x00-\x1f\x7f][^\s,\x00-\x1f\x7f]{0,63}")  # fullmatch
ADAPTER_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".bin", ".pth")
GENERIC_STEMS = {
    "adapter_model",
    "pytorch_lora_weights",
    "lora",
    "model",
    "diffusion_pytorch_model",
}
# where a file is and what its bytes are: what a moved file carries over to its old row
LOCATION_COLUMNS = ("path", "size", "mtime", "sha256", "autov2", "tensor_sha256", "autov3")
FILE_COLUMNS = (
    *LOCATION_COLUMNS,
    "format",
    "network_type",
    "base_family",
    "base_evidence",
    "base_conflict",
    "components",
    "rank",
    "rank_min",
    "rank_max",
    "rank_summary",
    "alpha",
    "dtype",
    "param_count",
    "module_count",
    "targets",
    "metadata",
    "summary",
)


@dataclass(frozen=True)
class FileFacts:
    """What reading one file gave: the file columns of an adapters row, and suggested triggers."""

    columns: dict[str, Any]
    trigger_words: tuple[str, ...]
    header_bytes: int


@dataclass(frozen=True)
class NewRow:
    """A checked adapter row about to be written: name, file, what reading it gave, tags, parents."""

    name: str
    version: str
    dest: Path
    facts: FileFacts
    tags: list[str]
    parents: list[LineageParent]
    preview: str | None = None  # the preview's name in the previews folder


def check_tag(tag: str) -> str:
    """Return `tag` if valid: 1-64 characters, no spaces, commas or control characters (NUL...),
    not starting with '-'."""
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        shown = repr(tag[:70]) if isinstance(tag, str) else type(tag).__name__
        raise InvalidInputError(
            f"invalid tag {shown}: 1-64 characters, no spaces, commas or control characters, "
            "not starting with '-'"
        )
    return tag


def check_source(source: str) -> str:
    """Return `source` if it is one of SOURCES."""
    if source not in SOURCES:
        raise InvalidInputError(f"invalid source {source!r}: use {', '.join(SOURCES)}")
    return source


def default_name(path: Path) -> str:
    """A valid adapter name from a file name (the folder's name for generic names)."""
    stem = path.stem if path.suffix else path.name
    if stem in GENERIC_STEMS and path.parent.name:
        stem = path.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    name = re.sub(r"-{2,}", "-", name).strip("._-")
    return name[:100] or "adapter"


def is_candidate(path: Path, trust_pickle: bool = False) -> bool:
    """Whether a file looks like an adapter to read (by suffix)."""
    suffix = path.suffix.lower()
    return suffix in ADAPTER_SUFFIXES or (trust_pickle and suffix in PICKLE_SUFFIXES)


def peft_weights(folder: Path) -> Path | None:
    """The weights file of a PEFT adapter folder (`adapter_config.json` beside it), else None."""
    if not (folder / "adapter_config.json").is_file():
        return None
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_facts(path: Path, *, hash: bool, trust_pickle: bool) -> FileFacts:
    """Inspect `path` (header only) and optionally hash it; BadFileError for non-adapters."""
    from lorahub import formats

    info = formats.inspect_file(path, trust_pickle=trust_pickle, hash=False)
    if info.format == "unknown" and not info.module_count:
        patterns = ", ".join(list(getattr(info, "key_patterns", []) or [])[:3])
        raise BadFileError(f"{path}: not a recognised adapter (keys like {patterns or 'none'})")
    hashes = formats.hash_file(path) if hash else None
    st = path.stat()
    cols = {
        "path": str(path),
        "size": st.st_size,
        "mtime": st.st_mtime,
        "sha256": hashes.sha256 if hashes else None,
        "autov2": hashes.autov2 if hashes else None,
        "tensor_sha256": hashes.tensor_sha256 if hashes else None,
        "autov3": hashes.autov3 if hashes else None,
        "format": info.format,
        "network_type": info.network_type,
        "base_family": info.base_family,
        "base_evidence": dumps(list(info.base_evidence or [])),
        "base_conflict": info.base_conflict,
        "components": dumps(list(info.components or [])),
        "rank": info.rank,
        "rank_min": info.rank_min,
        "rank_max": info.rank_max,
        "rank_summary": dumps({str(k): v for k, v in (info.rank_summary or {}).items()}),
        "alpha": info.alpha,
        "dtype": info.dtype,
        "param_count": info.param_count,
        "module_count": info.module_count,
        "targets": dumps(list(info.targets or [])),
        "metadata": dumps(dict(info.metadata or {})),
        "summary": dumps(dict(info.summary or {})),
    }
    header = int(getattr(info, "header_bytes", 0) or 0)
    return FileFacts(cols, tuple(info.trigger_words or ()), header)


def name_taken(db: sqlite_utils.Database, name: str, version: str = "") -> int | None:
    """The id of the adapter with this exact name and version, if any."""
    row = db.execute(
        "SELECT id FROM adapters WHERE name = ? AND version = ?", [name, version]
    ).fetchone()
    return row[0] if row else None


def check_no_mix(db: sqlite_utils.Database, name: str) -> None:
    """Refuse an adapter name that a mix already has (a reference must mean one thing)."""
    if db.execute("SELECT 1 FROM mixes WHERE name = ?", [name]).fetchone():
        raise AlreadyExistsError(f"{name!r} is already the name of a mix; choose another name")


def unique_name(db: sqlite_utils.Database, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... whichever is free (for scans)."""
    candidate, n = name, 1
    while db.execute(
        "SELECT 1 FROM adapters WHERE name = ? UNION SELECT 1 FROM mixes WHERE name = ?",
        [candidate, candidate],
    ).fetchone():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def registered_at(db: sqlite_utils.Database, path: str) -> tuple[int, str] | None:
    """(id, ref) of the adapter registered at `path`, if any."""
    row = db.execute(
        "SELECT id, name || CASE version WHEN '' THEN '' ELSE '@' || version END FROM adapters WHERE path = ? LIMIT 1",
        [path],
    ).fetchone()
    return (row[0], row[1]) if row else None


def insert_row(db: sqlite_utils.Database, columns: dict[str, Any]) -> int:
    """Insert one adapters row; returns its id."""
    stamp = now()
    row = {**columns, "created_at": stamp, "updated_at": stamp}
    keys = list(row)
    try:
        cur = db.execute(
            f"INSERT INTO adapters ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
            [row[k] for k in keys],
        )
    except sqlite3.IntegrityError as exc:
        other = registered_at(db, str(row.get("path")))
        if "adapters.path" not in str(exc) or other is None:
            raise
        raise AlreadyExistsError(f"{row['path']} is already registered as {other[1]!r}") from None
    return int(cur.lastrowid or 0)


def update_row(db: sqlite_utils.Database, adapter_id: int, columns: dict[str, Any]) -> None:
    """Update columns of one adapters row (and updated_at)."""
    row = {**columns, "updated_at": now()}
    sets = ", ".join(f"{k} = ?" for k in row)
    db.execute(f"UPDATE adapters SET {sets} WHERE id = ?", [*row.values(), adapter_id])


def add_tags(db: sqlite_utils.Database, adapter_id: int, tags: Iterable[str]) -> None:
    """Attach tags (already present ones are kept once)."""
    for tag in tags:
        db.execute(
            "INSERT OR IGNORE INTO adapter_tags (adapter_id, tag) VALUES (?, ?)",
            [adapter_id, check_tag(tag)],
        )


def remove_tags(db: sqlite_utils.Database, adapter_id: int, tags: Iterable[str]) -> None:
    """Detach tags (absent ones are ignored)."""
    for tag in tags:
        db.execute("DELETE FROM adapter_tags WHERE adapter_id = ? AND tag = ?", [adapter_id, tag])


def mark_user_fields(db: sqlite_utils.Database, adapter_id: int, fields: Iterable[str]) -> None:
    """Remember which fields the user set in lorahub: sidecars never overwrite those."""
    from lorahub.registry.db import dumps, loads

    (old,) = db.execute("SELECT user_fields FROM adapters WHERE id = ?", [adapter_id]).fetchone()
    merged = sorted(set(loads(old) or []) | set(fields))
    db.execute("UPDATE adapters SET user_fields = ? WHERE id = ?", [dumps(merged), adapter_id])


def mixes_using(db: sqlite_utils.Database, adapter_id: int) -> list[str]:
    """Names of the mixes that have this adapter as a member."""
    rows = db.execute(
        "SELECT DISTINCT m.name FROM mixes m JOIN mix_members mm ON mm.mix_id = m.id WHERE mm.adapter_id = ? ORDER BY m.name",
        [adapter_id],
    ).fetchall()
    return [r[0] for r in rows]


def store_destination(store: Path, name: str, version: str, source: Path) -> Path:
    """Where `add --copy` puts a file: <store>/<name>[@<version>]/<file name>."""
    folder = f"{name}@{version}" if version else name
    return store / folder / source.name


def sidecars(path: Path) -> list[Path]:
    """Files that travel with an adapter: `<stem>.adapter_config.json` or a PEFT `adapter_config.json`."""
    out = [path.with_name(f"{path.stem}.adapter_config.json")]
    if path.name == "adapter_model.safetensors":
        out.append(path.with_name("adapter_config.json"))
    return [p for p in out if p.is_file()]


def check_file(path: str | os.PathLike[str]) -> Path:
    """The absolute path of an existing file, else NotFoundError."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise NotFoundError(f"no such file: {p}")
    return p


def check_name_not_hash(db: sqlite_utils.Database, name: str) -> None:
    """Refuse a name that reads as another adapter's hash prefix: it would take over `<lora:PREFIX>`
    and the AutoV2/AutoV3 references of PNG "Lora hashes"."""
    if not re.fullmatch(r"[0-9a-fA-F]{8,64}", name):
        return
    low, high = name.lower(), name.lower() + "g"
    row = db.execute(
        "SELECT name || CASE version WHEN '' THEN '' ELSE '@' || version END FROM adapters"
        " WHERE (sha256 >= ? AND sha256 < ?) OR (tensor_sha256 >= ? AND tensor_sha256 < ?)"
        " LIMIT 1",
        [low, high, low, high],
    ).fetchone()
    if row is not None:
        raise AlreadyExistsError(
            f"name {name!r} is a hash prefix of adapter {row[0]!r}: a reference to it would be "
            "ambiguous; choose a name that is not hexadecimal"
        )


def validate_new(
    name: str, version: str | None, tags: Iterable[str], source: str
) -> tuple[str, str, list[str]]:
    """Check a new record's name, version, tags and source; returns (name, version, tags)."""
    check_name(name)
    if version:
        check_name(version, "version")
    check_source(source)
    return name, version or "", [check_tag(t) for t in tags]


def check_conflicts(
    db: sqlite_utils.Database, name: str, version: str, path: str, *, force: bool, copy: bool
) -> None:
    """Refuse a taken name (without force) or a file already registered under another name."""
    check_no_mix(db, name)
    check_name_not_hash(db, name)
    if not force and name_taken(db, name, version) is not None:
        ref = f"{name}@{version}" if version else name
        raise AlreadyExistsError(
            f"adapter {ref!r} exists (use --version V for a new version, or --force to replace it)"
        )
    other = None if copy else registered_at(db, path)
    if other is not None and not force and other[0] != name_taken(db, name, version):
        raise AlreadyExistsError(f"{path} is already registered as {other[1]!r}")


def copy_in(src: Path, dest: Path) -> list[Path]:
    """Copy the file and its sidecars into the store atomically; returns what was written."""
    written = [atomic_copy(src, dest)]
    written += [
        atomic_copy(s, dest.with_name(s.name.replace(src.stem, dest.stem, 1)))
        for s in sidecars(src)
    ]
    return written
