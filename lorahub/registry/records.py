"""Frozen records the registry returns, each with one JSON shape (`to_json`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lorahub.types import MixMember

SOURCES = ("local", "trained", "merged", "resized", "hub", "converted", "extracted")
LINEAGE_KINDS = ("adapter", "model", "dataset", "hub_repo")
RELATIONS = (
    "trained-from",
    "merged-from",
    "converted-from",
    "pulled-from",
    "resized-from",
    "fused-from",
    "extracted-from",
)


@dataclass(frozen=True)
class PublicationRecord:
    """One push of an adapter (or mix) to a Hub repo."""

    repo: str
    revision: str
    commit_sha: str | None
    url: str | None
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "commit_sha": self.commit_sha,
            "url": self.url,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class AdapterRecord:
    """Everything the registry knows about one adapter file (see docs/json.md)."""

    id: int
    name: str
    version: str | None
    path: str
    size: int
    mtime: float
    sha256: str | None
    autov2: str | None
    tensor_sha256: str | None
    autov3: str | None
    format: str
    network_type: str
    base_family: str
    base_evidence: tuple[str, ...]
    base_conflict: str | None
    components: tuple[str, ...]
    rank: int | None
    rank_min: int | None
    rank_max: int | None
    rank_summary: dict[str, int]
    alpha: float | None
    dtype: str | None
    param_count: int | None
    module_count: int | None
    targets: tuple[str, ...]
    trigger_words: tuple[str, ...]
    description: str | None
    source: str
    managed: bool
    summary: dict[str, Any]
    created_at: str
    updated_at: str
    preview: str | None = None
    sidecar: dict[str, Any] | None = None  # what other tools' sidecar files said (and which)
    tags: tuple[str, ...] = ()
    publications: tuple[PublicationRecord, ...] = ()
    metadata: dict[str, str] | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        """The reference that names exactly this record: NAME or NAME@VERSION."""
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def key(self) -> str:
        """Identity of the applied weights, the engine's cache key.

        The tensors alone do not decide them: header metadata (a diffusers/PEFT alpha, the
        format) changes how they load, so two files with equal tensors and another alpha must
        not share a cache entry. The file hash covers both; the tensor hash leads for reading.
        """
        if self.tensor_sha256 and self.sha256:
            return f"{self.tensor_sha256}:{self.sha256}"
        return f"{self.path}:{self.size}:{self.mtime!r}"

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of an adapter (list --json, show --json, the HTTP API)."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "path": self.path,
            "size": self.size,
            "mtime": self.mtime,
            "sha256": self.sha256,
            "autov2": self.autov2,
            "tensor_sha256": self.tensor_sha256,
            "autov3": self.autov3,
            "format": self.format,
            "network_type": self.network_type,
            "base_family": self.base_family,
            "base_evidence": list(self.base_evidence),
            "base_conflict": self.base_conflict,
            "components": list(self.components),
            "rank": self.rank,
            "rank_min": self.rank_min,
            "rank_max": self.rank_max,
            "rank_summary": dict(self.rank_summary),
            "alpha": self.alpha,
            "dtype": self.dtype,
            "param_count": self.param_count,
            "module_count": self.module_count,
            "targets": list(self.targets),
            "trigger_words": list(self.trigger_words),
            "description": self.description,
            "source": self.source,
            "managed": self.managed,
            "tags": list(self.tags),
            "summary": dict(self.summary),
            "metadata": None if self.metadata is None else dict(self.metadata),
            "preview": self.preview,
            "sidecar": self.sidecar,
            "publications": [p.to_json() for p in self.publications],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class LineageEdge:
    """One lineage row: child was made from parent by `relation`."""

    id: int
    child_kind: str
    child_id: str
    child_label: str | None
    parent_kind: str
    parent_id: str
    parent_label: str | None
    relation: str
    details: dict[str, Any]
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "child": {"kind": self.child_kind, "id": self.child_id, "label": self.child_label},
            "parent": {"kind": self.parent_kind, "id": self.parent_id, "label": self.parent_label},
            "relation": self.relation,
            "details": self.details,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class LineageParent:
    """A parent given to `add_adapter(lineage=...)`: an adapter ref, model name, dataset path or repo."""

    kind: str
    ref: str
    relation: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class AddOptions:
    """How `Registry.add_adapter` registers a file; every field may also be given as a keyword."""

    name: str | None = None  # default: the file's name
    version: str | None = None  # a new version of an existing name
    tags: Iterable[str] = ()
    copy: bool = False  # copy into the managed store instead of referencing the file
    force: bool = False  # replace an adapter of the same name and version
    source: str = "local"  # one of SOURCES
    description: str | None = None
    trigger_words: Sequence[str] | None = None  # default: from the file's metadata
    hash: bool = True  # False: `verify` fills the hashes in later
    trust_pickle: bool = False
    lineage: Iterable[LineageParent] = ()
    preview: str | os.PathLike[str] | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One example image of an adapter (the first is its preview), with what it says about itself."""

    id: int
    position: int
    file: str  # relative to the previews folder
    source: str | None
    tool: str | None
    params: dict[str, Any] | None
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": self.position,
            "file": self.file,
            "source": self.source,
            "tool": self.tool,
            "params": self.params,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class MixRecord:
    """A named, weighted set of adapters."""

    id: int
    name: str
    description: str | None
    base_family: str | None
    members: tuple[MixMember, ...]
    member_names: tuple[str | None, ...]
    created_at: str
    updated_at: str
    defaults: dict[str, Any] = field(default_factory=dict)  # prompt, seed, steps, … to start from
    details: dict[str, Any] = field(default_factory=dict)  # how it was made (e.g. a search)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "base_family": self.base_family,
            "defaults": self.defaults,
            "details": self.details,
            "members": [
                {**m.to_json(), "adapter": n}
                for m, n in zip(self.members, self.member_names, strict=True)
            ],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class ModelRecord:
    """A full model lorahub made or knows (a fused pipeline, a base): not an adapter."""

    id: int
    name: str
    path: str
    kind: str
    base_family: str | None
    details: dict[str, Any]
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "base_family": self.base_family,
            "details": self.details,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class ScanItem:
    """One file in a scan or verify report."""

    path: str
    name: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "detail": self.detail}


@dataclass
class ScanReport:
    """What a scan found: each list holds ScanItems; duplicates are groups sharing a tensor hash."""

    root: str
    new: list[ScanItem] = field(default_factory=list)
    changed: list[ScanItem] = field(default_factory=list)
    unchanged: list[ScanItem] = field(default_factory=list)
    moved: list[ScanItem] = field(default_factory=list)
    missing: list[ScanItem] = field(default_factory=list)
    skipped: list[ScanItem] = field(default_factory=list)
    errors: list[ScanItem] = field(default_factory=list)
    sidecars: list[ScanItem] = field(default_factory=list)  # sidecar facts taken in, or problems
    duplicates: list[list[ScanItem]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_total: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"root": self.root}
        for key in (
            "new",
            "changed",
            "unchanged",
            "moved",
            "missing",
            "skipped",
            "errors",
            "sidecars",
        ):
            out[key] = [i.to_json() for i in getattr(self, key)]
        out["duplicates"] = [[i.to_json() for i in g] for g in self.duplicates]
        out["bytes_read"] = self.bytes_read
        out["bytes_total"] = self.bytes_total
        return out


@dataclass
class VerifyReport:
    """What verify found: ok, changed (bytes differ), missing, moved (found elsewhere, path
    updated), errors (there but not readable as a file)."""

    ok: list[ScanItem] = field(default_factory=list)
    changed: list[ScanItem] = field(default_factory=list)
    missing: list[ScanItem] = field(default_factory=list)
    moved: list[ScanItem] = field(default_factory=list)
    errors: list[ScanItem] = field(default_factory=list)  # present but not readable

    def to_json(self) -> dict[str, Any]:
        return {
            k: [i.to_json() for i in getattr(self, k)]
            for k in ("ok", "changed", "missing", "moved", "errors")
        }
