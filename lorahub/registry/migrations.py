"""The registry schema: it is created and changed only here, by named migrations, in order.

Never edit an applied migration; add a new one. `registry.db.example` is generated from these
(`lorahub db example`) and a test compares its schema with a fresh build.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

from lorahub.registry.db import transaction

migrations = Migrations("lorahub")


def _run(db: sqlite_utils.Database, script: str) -> None:
    """Run `;`-separated statements inside the migration's transaction (no executescript: it commits)."""
    for statement in _split(script):
        db.execute(statement)


def _split(script: str) -> list[str]:
    """Split on `;` at line ends, keeping trigger bodies (`BEGIN ... END;`) whole."""
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for line in script.strip().splitlines():
        current.append(line)
        stripped = line.strip().upper()
        if stripped.endswith(" BEGIN") or stripped == "BEGIN":
            depth += 1
        if stripped == "END;":
            depth -= 1
        if stripped.endswith(";") and depth == 0:
            out.append("\n".join(current).strip().rstrip(";"))
            current = []
    if "".join(current).strip():
        out.append("\n".join(current).strip().rstrip(";"))
    return out


@migrations(name="0001_adapters_and_tags")
def m0001_adapters_and_tags(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            version TEXT NOT NULL DEFAULT '',
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            sha256 TEXT,
            autov2 TEXT,
            tensor_sha256 TEXT,
            autov3 TEXT,
            format TEXT NOT NULL,
            network_type TEXT NOT NULL,
            base_family TEXT NOT NULL,
            base_evidence TEXT NOT NULL DEFAULT '[]',
            base_conflict TEXT,
            components TEXT NOT NULL DEFAULT '[]',
            rank INTEGER,
            rank_min INTEGER,
            rank_max INTEGER,
            rank_summary TEXT NOT NULL DEFAULT '{}',
            alpha REAL,
            dtype TEXT,
            param_count INTEGER,
            module_count INTEGER,
            targets TEXT NOT NULL DEFAULT '[]',
            trigger_words TEXT NOT NULL DEFAULT '[]',
            description TEXT,
            source TEXT NOT NULL DEFAULT 'local',
            managed INTEGER NOT NULL DEFAULT 0,
            metadata TEXT NOT NULL DEFAULT '{}',
            summary TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX adapters_name_version ON adapters (name, version);
        CREATE INDEX adapters_path ON adapters (path);
        CREATE INDEX adapters_sha256 ON adapters (sha256);
        CREATE INDEX adapters_tensor_sha256 ON adapters (tensor_sha256);
        CREATE INDEX adapters_base_family ON adapters (base_family);
        CREATE INDEX adapters_format ON adapters (format);
        CREATE INDEX adapters_rank ON adapters (rank);
        CREATE INDEX adapters_created_at ON adapters (created_at);
        CREATE INDEX adapters_size ON adapters (size);
        CREATE TABLE adapter_tags (
            adapter_id INTEGER NOT NULL REFERENCES adapters (id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (adapter_id, tag)
        ) WITHOUT ROWID;
        CREATE INDEX adapter_tags_tag ON adapter_tags (tag, adapter_id);
        """,
    )


@migrations(name="0002_lineage")
def m0002_lineage(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE lineage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            child_kind TEXT NOT NULL,
            child_id TEXT NOT NULL,
            child_label TEXT,
            parent_kind TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            parent_label TEXT,
            relation TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE INDEX lineage_child ON lineage (child_kind, child_id);
        CREATE INDEX lineage_parent ON lineage (parent_kind, parent_id);
        """,
    )


_FTS_TAGS = (
    "coalesce((SELECT group_concat(tag, ' ') FROM adapter_tags WHERE adapter_id = {id}), '')"
)


@migrations(name="0003_fulltext_search")
def m0003_fulltext_search(db: sqlite_utils.Database) -> None:
    tags_new = _FTS_TAGS.format(id="new.id")
    _run(
        db,
        f"""
        CREATE VIRTUAL TABLE adapters_fts USING fts5 (
            name, description, tags, trigger_words, tokenize = 'unicode61 remove_diacritics 2'
        );
        INSERT INTO adapters_fts (rowid, name, description, tags, trigger_words)
            SELECT id, name || ' ' || version, coalesce(description, ''),
                   {_FTS_TAGS.format(id="adapters.id")}, trigger_words FROM adapters;
        CREATE TRIGGER adapters_fts_insert AFTER INSERT ON adapters BEGIN
            INSERT INTO adapters_fts (rowid, name, description, tags, trigger_words)
            VALUES (new.id, new.name || ' ' || new.version, coalesce(new.description, ''),
                    {tags_new}, new.trigger_words);
        END;
        CREATE TRIGGER adapters_fts_update AFTER UPDATE OF name, version, description, trigger_words ON adapters BEGIN
            UPDATE adapters_fts SET name = new.name || ' ' || new.version,
                description = coalesce(new.description, ''), trigger_words = new.trigger_words
            WHERE rowid = new.id;
        END;
        CREATE TRIGGER adapters_fts_delete AFTER DELETE ON adapters BEGIN
            DELETE FROM adapters_fts WHERE rowid = old.id;
        END;
        CREATE TRIGGER adapter_tags_fts_insert AFTER INSERT ON adapter_tags BEGIN
            UPDATE adapters_fts SET tags = {_FTS_TAGS.format(id="new.adapter_id")}
            WHERE rowid = new.adapter_id;
        END;
        CREATE TRIGGER adapter_tags_fts_delete AFTER DELETE ON adapter_tags BEGIN
            UPDATE adapters_fts SET tags = {_FTS_TAGS.format(id="old.adapter_id")}
            WHERE rowid = old.adapter_id;
        END;
        """,
    )


@migrations(name="0004_mixes")
def m0004_mixes(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE mixes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            description TEXT,
            base_family TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE mix_members (
            mix_id INTEGER NOT NULL REFERENCES mixes (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            ref TEXT NOT NULL,
            adapter_id INTEGER REFERENCES adapters (id) ON DELETE RESTRICT,
            weight REAL NOT NULL,
            te_weight REAL,
            block_weights TEXT,
            PRIMARY KEY (mix_id, position)
        );
        CREATE INDEX mix_members_adapter ON mix_members (adapter_id);
        """,
    )


@migrations(name="0005_publications_and_models")
def m0005_publications_and_models(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE publications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            adapter_id INTEGER REFERENCES adapters (id) ON DELETE CASCADE,
            mix_id INTEGER REFERENCES mixes (id) ON DELETE CASCADE,
            repo TEXT NOT NULL,
            revision TEXT NOT NULL,
            commit_sha TEXT,
            url TEXT,
            created_at TEXT NOT NULL,
            CHECK ((adapter_id IS NULL) != (mix_id IS NULL))
        );
        CREATE UNIQUE INDEX publications_unique ON publications (
            coalesce(adapter_id, -1), coalesce(mix_id, -1), repo, revision, coalesce(commit_sha, '')
        );
        CREATE INDEX publications_adapter ON publications (adapter_id);
        CREATE INDEX publications_mix ON publications (mix_id);
        CREATE TABLE models (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'fused',
            base_family TEXT,
            details TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    )


@migrations(name="0006_previews_and_scan_roots")
def m0006_previews_and_scan_roots(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        ALTER TABLE adapters ADD COLUMN preview TEXT;
        CREATE TABLE scan_roots (
            path TEXT PRIMARY KEY,
            last_scan_at TEXT NOT NULL
        );
        """,
    )


@migrations(name="0008_mix_defaults_and_images")
def m0008_mix_defaults_and_images(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        ALTER TABLE mixes ADD COLUMN defaults TEXT;
        CREATE TABLE adapter_images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            adapter_id INTEGER NOT NULL REFERENCES adapters (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            file TEXT NOT NULL,
            source TEXT,
            tool TEXT,
            params TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (adapter_id, file)
        );
        CREATE INDEX adapter_images_adapter ON adapter_images (adapter_id, position);
        """,
    )


@migrations(name="0009_sidecars")
def m0009_sidecars(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        ALTER TABLE adapters ADD COLUMN sidecar TEXT;
        ALTER TABLE adapters ADD COLUMN user_fields TEXT;
        """,
    )


@migrations(name="0010_one_row_per_path")
def m0010_one_row_per_path(db: sqlite_utils.Database) -> None:
    """One file, one row (concurrent scans registered files several times): keep the oldest row
    per path, move what referenced the others onto it, then let a UNIQUE index enforce it."""
    from lorahub.registry.dedup import merge_adapter_rows

    dupes = db.execute(
        "SELECT a.id, k.keep FROM adapters a JOIN (SELECT path, min(id) AS keep FROM adapters"
        " GROUP BY path HAVING count(*) > 1) k ON a.path = k.path WHERE a.id != k.keep ORDER BY a.id"
    ).fetchall()
    for dup, keep in dupes:
        merge_adapter_rows(db, dup, keep)
    _run(
        db,
        """
        DROP INDEX adapters_path;
        CREATE UNIQUE INDEX adapters_path ON adapters (path);
        """,
    )


@migrations(name="0011_mix_details")
def m0011_mix_details(db: sqlite_utils.Database) -> None:
    """How a mix was made, as JSON (e.g. `mix search`: examples, budget, losses)."""
    _run(db, "ALTER TABLE mixes ADD COLUMN details TEXT;")


def apply_migrations(db: sqlite_utils.Database, stop_before: str | None = None) -> None:
    """Apply pending migrations under the write lock, so two processes never race on them."""
    if not migrations.pending(db):
        return
    with transaction(db):
        migrations.apply(db, stop_before=stop_before)


def migration_status(db: sqlite_utils.Database) -> list[tuple[str, bool]]:
    """Every migration by name, with whether it is applied: the applied ones, then the pending.

    Reads only, so it answers for a database opened read-only (`Registry(migrate=False)`).
    """
    applied = [(m.name, True) for m in migrations.applied(db)]
    return applied + [(m.name, False) for m in migrations.pending(db)]
