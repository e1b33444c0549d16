"""`Registry`: the one object callers use; each method is one query or one transaction."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lorahub import paths
from lorahub.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from lorahub.registry import adapters as A
from lorahub.registry import bulk as B
from lorahub.registry import images as I
from lorahub.registry import lineage as L
from lorahub.registry import mixes as M
from lorahub.registry import queries as Q
from lorahub.registry import scan as S
from lorahub.registry.bulk import TagChange
from lorahub.registry.db import connect, connect_readonly, dumps, transaction
from lorahub.registry.migrations import apply_migrations, migration_status
from lorahub.registry.records import (
    AdapterRecord,
    AddOptions,
    ImageRecord,
    LineageEdge,
    MixRecord,
    ModelRecord,
    PublicationRecord,
    ScanReport,
    VerifyReport,
)
from lorahub.types import AdapterSpec, MixMember

Progress = Callable[..., None] | None


class Registry:
    """The adapter registry in one SQLite file (default `paths.registry_path()`), migrated on open.

    `migrate=False` opens the file read-only and as it is, pending migrations and all (for
    `lorahub db status`); a missing file then reads as empty and is not created.
    """

    def __init__(self, path: Path | str | None = None, *, migrate: bool = True):
        self.path = Path(path) if path is not None else paths.registry_path()
        if not migrate:
            self.db = connect_readonly(self.path)
            return
        self.db = connect(self.path)
        apply_migrations(self.db)

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> list[tuple[str, bool]]:
        """Every migration by name, with whether it is applied (pending ones last)."""
        return migration_status(self.db)

    # adapters: adding

    def add_adapter(
        self, path: str | os.PathLike[str], options: AddOptions | None = None, /, **fields: Any
    ) -> AdapterRecord:
        """Register one file (in place, or copied into the store); record, tags and lineage in one
        transaction. `options` (AddOptions), or its fields as keywords, say how."""
        o = replace(options or AddOptions(), **fields)
        src = A.check_file(path)
        name, version, tags = A.validate_new(
            o.name or A.default_name(src), o.version, o.tags, o.source
        )
        parents = list(o.lineage)
        for p in parents:
            L.check_kind_relation(p.kind, p.relation)
        facts = A.read_facts(src, hash=o.hash, trust_pickle=o.trust_pickle)
        A.check_conflicts(self.db, name, version, str(src), force=o.force, copy=o.copy)
        dest = A.store_destination(paths.store_dir(), name, version, src) if o.copy else src
        copied = A.copy_in(src, dest) if o.copy else []
        try:
            rel = self._copy_preview(o.preview) if o.preview is not None else None
            row = A.NewRow(name, version, dest, facts, tags, parents, rel)
            adapter_id = self._write_adapter(row, o)
        except BaseException:
            for written in copied:
                written.unlink(missing_ok=True)
            raise
        return Q.get_record(self.db, adapter_id)

    def _write_adapter(self, row: A.NewRow, o: AddOptions) -> int:
        """Insert (or with force replace) the row, its tags and lineage: all or nothing."""
        st = row.dest.stat()
        given = o.trigger_words
        triggers = list(given) if given is not None else list(row.facts.trigger_words)
        cols = {
            **row.facts.columns,
            "path": str(row.dest),
            "size": st.st_size,
            "mtime": st.st_mtime,
            "source": o.source,
            "managed": int(o.copy),
            "description": o.description,
            "trigger_words": dumps(triggers),
            **({"preview": row.preview} if row.preview else {}),
        }
        with transaction(self.db):
            existing = A.name_taken(self.db, row.name, row.version)
            if existing is not None and not o.force:
                raise AlreadyExistsError(
                    f"adapter {row.name!r} exists (use --version V or --force)"
                )
            if existing is not None:
                A.update_row(self.db, existing, cols)
                adapter_id = existing
            else:
                adapter_id = A.insert_row(
                    self.db, {**cols, "name": row.name, "version": row.version}
                )
            A.add_tags(self.db, adapter_id, row.tags)
            for p in row.parents:
                L.insert_edge(
                    self.db, ("adapter", adapter_id), (p.kind, p.ref), p.relation, p.details
                )
        return adapter_id

    def add_path(
        self, path: str | os.PathLike[str], options: AddOptions | None = None, /, **fields: Any
    ) -> list[AdapterRecord]:
        """Register a file, or every adapter file under a folder (all in one transaction)."""
        o = replace(options or AddOptions(), **fields)
        root = Path(path).expanduser().resolve()
        if root.is_file():
            return [self.add_adapter(root, o)]
        if not root.is_dir():
            raise NotFoundError(f"no such file or folder: {root}")
        peft = A.peft_weights(root)
        if peft is not None:  # a PEFT adapter folder is one adapter, not a folder of them
            return [self.add_adapter(peft, o)]
        if o.name or o.copy or o.preview:
            raise InvalidInputError(
                "--name, --copy and a preview apply to a single file, not a folder"
            )
        files = list(S.walk(root, o.trust_pickle))
        if not files:
            raise NotFoundError(f"no adapter files under {root}")
        with transaction(self.db):
            ids = [self.add_adapter(f, o).id for f in files]
        return [Q.get_record(self.db, i) for i in ids]

    # adapters: reading

    def get_adapter(self, ref: str) -> AdapterRecord:
        """NAME, NAME@VERSION (bare NAME: newest version), or an AutoV2/AutoV3/sha256 prefix of 8+ hex."""
        return Q.get_record(self.db, Q.resolve_id(self.db, ref))

    def list_adapters(
        self,
        *,
        tags: Iterable[str] = (),
        base: str | None = None,
        format: str | None = None,
        min_rank: int | None = None,
        max_rank: int | None = None,
        search: str | None = None,
        sort: str = "name",
        published: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[AdapterRecord]:
        """Adapters matching every filter (tags: all must match), a page of them with
        limit/offset; `metadata` is not loaded."""
        where, params = Q.list_where(
            tags=tuple(tags),
            base=base,
            format=format,
            min_rank=min_rank,
            max_rank=max_rank,
            search=search,
            published=published,
        )
        return Q.select_records(
            self.db, where, params, order=Q.sort_clause(sort), limit=limit, offset=offset
        )

    def count_adapters(self, **filters: Any) -> int:
        """How many adapters are registered (matching `list_adapters` filters, if given)."""
        where, params = Q.list_where(**filters)
        sql = f"SELECT count(*) FROM adapters a WHERE {where}"
        return int(self.db.execute(sql, params).fetchone()[0])

    def facets(self) -> dict[str, list[str]]:
        """Every tag and base family in use (the gallery's filter choices), without the rows."""
        tags = [r[0] for r in self.db.execute("SELECT DISTINCT tag FROM adapter_tags ORDER BY tag")]
        bases = [
            r[0] for r in self.db.execute("SELECT DISTINCT base_family FROM adapters ORDER BY 1")
        ]
        return {"tags": tags, "bases": bases}

    # adapters: changing

    def tag(self, ref: str, tags: Iterable[str]) -> AdapterRecord:
        """Add tags to an adapter."""
        tag_list = [A.check_tag(t) for t in tags]
        with transaction(self.db):
            adapter_id = Q.resolve_id(self.db, ref)
            A.add_tags(self.db, adapter_id, tag_list)
        return Q.get_record(self.db, adapter_id)

    def untag(self, ref: str, tags: Iterable[str]) -> AdapterRecord:
        """Remove tags from an adapter."""
        with transaction(self.db):
            adapter_id = Q.resolve_id(self.db, ref)
            A.remove_tags(self.db, adapter_id, list(tags))
        return Q.get_record(self.db, adapter_id)

    def bulk_tag(
        self,
        where: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        dry_run: bool = False,
    ) -> list[TagChange]:
        """Add/remove tags on every adapter `where` (the `list` filters as KEY=VALUE) selects."""
        filters = B.parse_where(where)
        return B.bulk_tags(self.db, filters, add=tuple(add), remove=tuple(remove), dry_run=dry_run)

    def update_adapter(self, ref: str, **fields: Any) -> AdapterRecord:
        """Change `description` and/or `trigger_words`."""
        unknown = set(fields) - {"description", "trigger_words"}
        if unknown:
            raise InvalidInputError(
                f"cannot update {', '.join(sorted(unknown))}: only description and trigger_words"
            )
        if "trigger_words" in fields:
            fields["trigger_words"] = dumps([str(w) for w in fields["trigger_words"] or []])
        with transaction(self.db):
            adapter_id = Q.resolve_id(self.db, ref)
            if fields:
                A.mark_user_fields(self.db, adapter_id, fields)
                A.update_row(self.db, adapter_id, fields)
        return Q.get_record(self.db, adapter_id)

    def remove_adapter(self, ref: str, delete_file: bool = False) -> AdapterRecord:
        """Forget an adapter (refused while a mix uses it); its file is deleted only with `delete_file`."""
        with transaction(self.db):
            record = Q.get_record(self.db, Q.resolve_id(self.db, ref))
            used = A.mixes_using(self.db, record.id)
            if used:
                raise InvalidInputError(
                    f"{record.ref} is used by mix(es) {', '.join(used)}; remove them first"
                )
            self.db.execute(
                "DELETE FROM lineage WHERE child_kind = 'adapter' AND child_id = ?",
                [str(record.id)],
            )
            self.db.execute("DELETE FROM adapters WHERE id = ?", [record.id])
        if delete_file:
            for p in [Path(record.path), *A.sidecars(Path(record.path))]:
                p.unlink(missing_ok=True)
        return record

    def set_preview(self, ref: str, image_path: str | os.PathLike[str]) -> AdapterRecord:
        """Copy an image into the previews folder and attach it (the stored path is relative)."""
        record = self.get_adapter(ref)
        rel = self._copy_preview(image_path)
        with transaction(self.db):
            A.update_row(self.db, record.id, {"preview": rel})
        return Q.get_record(self.db, record.id)

    def _copy_preview(self, image_path: str | os.PathLike[str]) -> str:
        return I.copy_into_previews(image_path)

    def add_images(self, ref: str, images: Sequence[str | os.PathLike[str]]) -> list[ImageRecord]:
        """Append example images (copied in, their recipes read); the first is the preview."""
        I.check_sources(images)
        record = self.get_adapter(ref)
        return I.add_images(self.db, record.id, images, self._copy_preview)

    def images(self, ref: str) -> list[ImageRecord]:
        """An adapter's example images, in order."""
        return I.list_images(self.db, self.get_adapter(ref).id)

    def images_of(
        self, ids: Sequence[int], limit: int = 6
    ) -> dict[int, tuple[int, list[ImageRecord]]]:
        """Image count and first `limit` images of each adapter id (a gallery page, one query)."""
        return I.images_of(self.db, ids, limit)

    def remove_image(self, ref: str, which: str) -> ImageRecord:
        """Remove one example image (by position or file name)."""
        return I.remove_image(self.db, self.get_adapter(ref).id, which)

    def preview_path(self, ref: str) -> Path | None:
        """The absolute path of an adapter's preview image, if it has one."""
        rel = self.get_adapter(ref).preview
        return paths.previews_dir() / rel if rel else None

    # scanning and hashes

    def scan(
        self,
        root: str | os.PathLike[str],
        *,
        hash: bool = True,
        trust_pickle: bool = False,
        progress: Progress = None,
        refresh_sidecars: bool = False,
        workers: int | None = None,
    ) -> ScanReport:
        """Index every adapter under `root`, reading only new or changed files (and sidecars);
        many files are read by `workers` processes (default: the usable cores, or
        $LORAHUB_SCAN_WORKERS)."""
        return S.scan_folder(
            self.db,
            root,
            hash=hash,
            trust_pickle=trust_pickle,
            progress=progress,
            refresh_sidecars=refresh_sidecars,
            workers=workers,
        )

    def compute_missing_hashes(self, progress: Progress = None) -> int:
        """Hash files registered without hashes (`--no-hash`); returns how many were hashed."""
        return S.fill_hashes(self.db, progress)

    def verify(self, progress: Progress = None) -> VerifyReport:
        """Re-hash every file: ok, changed, missing, or moved (path updated)."""
        return S.verify_all(self.db, progress)

    # lineage, publications, models

    def add_lineage(
        self,
        child_kind: str,
        child_id: str | int,
        parent_kind: str,
        parent_id: str | int,
        relation: str,
        details: dict[str, Any] | None = None,
    ) -> LineageEdge:
        """Record that child was made from parent (adapters by ref or id, models by name or id)."""
        return L.insert_edge(
            self.db, (child_kind, child_id), (parent_kind, parent_id), relation, details
        )

    def lineage(self, ref: str) -> list[LineageEdge]:
        """An adapter's parents and children."""
        return L.lineage_of(self.db, "adapter", str(Q.resolve_id(self.db, ref)))

    def model_lineage(self, name: str) -> list[LineageEdge]:
        """A model's parents and children."""
        return L.lineage_of(self.db, "model", str(L.find_model(self.db, name).id))

    def record_publication(
        self,
        ref: str,
        repo: str,
        revision: str,
        commit_sha: str | None,
        url: str | None,
        *,
        kind: str = "adapter",
    ) -> list[PublicationRecord]:
        """Record a push of an adapter (or, kind="mix", a mix recipe); returns its publications."""
        owner = (
            kind,
            Q.resolve_id(self.db, ref) if kind == "adapter" else M.load_mix(self.db, ref).id,
        )
        L.insert_publication(self.db, owner, repo, revision, commit_sha, url)
        return self.publications(ref, kind=kind)

    def publications(self, ref: str, *, kind: str = "adapter") -> list[PublicationRecord]:
        """Where an adapter (or mix) was published, oldest first."""
        if kind == "mix":
            return L.select_publications(self.db, "mix_id", M.load_mix(self.db, ref).id)
        return L.select_publications(self.db, "adapter_id", Q.resolve_id(self.db, ref))

    def record_model(
        self,
        name: str,
        path: str | os.PathLike[str],
        details: dict[str, Any] | None = None,
        *,
        kind: str = "fused",
        base_family: str | None = None,
        force: bool = False,
    ) -> ModelRecord:
        """Record a full model (a fused pipeline or a base); not an adapter."""
        return L.upsert_model(
            self.db, name, Path(path), details, kind=kind, base_family=base_family, force=force
        )

    def ensure_model(
        self,
        name: str,
        path: str | os.PathLike[str],
        details: dict[str, Any] | None = None,
        *,
        kind: str,
        base_family: str | None = None,
    ) -> ModelRecord:
        """The recorded model `name`, recorded first when it is new (another writer may win)."""
        for _ in range(2):
            try:
                return self.get_model(name)
            except NotFoundError:
                try:
                    return self.record_model(
                        name, path, details, kind=kind, base_family=base_family
                    )
                except AlreadyExistsError:
                    continue
        return self.get_model(name)

    def get_model(self, name: str) -> ModelRecord:
        """A recorded model by name."""
        return L.find_model(self.db, name)

    def list_models(self) -> list[ModelRecord]:
        """Every recorded model."""
        return L.list_models(self.db)

    # mixes

    def create_mix(
        self,
        name: str,
        members: list[MixMember],
        *,
        description: str | None = None,
        force: bool = False,
        defaults: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> MixRecord:
        """Store a validated mix (members exist, no duplicates, one base family)."""
        return M.save_mix(
            self.db,
            name,
            members,
            description=description,
            force=force,
            defaults=defaults,
            details=details,
        )

    def get_mix(self, name: str) -> MixRecord:
        """A mix by name."""
        return M.load_mix(self.db, name)

    def list_mixes(self) -> list[MixRecord]:
        """Every mix, by name."""
        return M.all_mixes(self.db)

    def remove_mix(self, name: str) -> None:
        """Remove a mix (its adapters stay)."""
        M.delete_mix(self.db, name)

    def resolve_members(self, members: list[MixMember]) -> list[AdapterSpec]:
        """Weighted references to AdapterSpecs for the engine and ops (mix rules applied)."""
        return M.specs(self.db, members)

    def resolve_request(
        self, members: list[MixMember], mix: str | None = None
    ) -> list[AdapterSpec]:
        """A mix's members then `members`, as AdapterSpecs; every unknown name in one NotFoundError."""
        missing: list[str] = []
        specs: list[AdapterSpec] = []
        steps: list[Callable[[], list[AdapterSpec]]] = []
        if mix:
            steps.append(lambda: self.resolve_mix(mix))
        if members:
            steps.append(lambda: self.resolve_members(members))
        for step in steps:
            try:
                specs += step()
            except NotFoundError as exc:
                missing.append(exc.message)
        if missing:
            raise NotFoundError("; ".join(missing))
        return specs

    def resolve_mix(self, name: str) -> list[AdapterSpec]:
        """A stored mix's members as AdapterSpecs (the exact adapters pinned at creation)."""
        mix = M.load_mix(self.db, name)
        records = M.mix_member_records(self.db, mix)
        return [M.to_spec(m, r) for m, r in zip(mix.members, records, strict=True)]
