"""How adapter files reach Ray engine replicas: by path, or by `repo@revision` from the Hub.

`--adapters-from path` (the default) reads the path the registry gave: one machine, or a shared
filesystem mounted at the same path everywhere. With `hub` or `auto`, the ingress adds, for each
adapter whose exact bytes are on the Hub (pushed in the diffusers layout, or pulled from there),
a `HubSource` (repo, commit, file, sha256); the replica fetches that file through the Hub client's
cache (`hub`: always; `auto`: when the path is not readable on its machine) and uses it only
when its sha256 is the registered one. The engine caches by key, which the file's bytes make, so
the set id, the routing and the image are the same either way.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lorahub.errors import InvalidInputError
from lorahub.server.ray_config import ADAPTERS_FROM as MODES
from lorahub.types import AdapterSpec

if TYPE_CHECKING:
    from lorahub.registry import Registry

WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what `lorahub push` writes (hub.stage)


@dataclass(frozen=True)
class HubSource:
    """Where an adapter's registered bytes are published: `repo@revision`, `filename`, `sha256`."""

    repo: str
    revision: str
    filename: str
    sha256: str


def check_mode(mode: str) -> str:
    """`mode` if it is one of MODES, else InvalidInputError."""
    if mode not in MODES:
        raise InvalidInputError(f"invalid --adapters-from {mode!r}: use {', '.join(MODES)}")
    return mode


def hub_sources(registry: Registry, specs: list[AdapterSpec]) -> dict[str, HubSource]:
    """Ingress side: the Hub source of each adapter (by key) that has one."""
    out: dict[str, HubSource] = {}
    for spec in specs:
        record = registry.get_adapter(spec.name)
        if record.key != spec.key:  # not the record this spec was resolved from
            continue
        source = published_source(record) or pulled_source(record, registry)
        if source is not None:
            out[spec.key] = source
    return out


def published_source(record: Any) -> HubSource | None:
    """The newest push whose weight file is the registered file itself (a diffusers-layout file)."""
    if record.format != "diffusers" or not record.sha256 or not record.publications:
        return None
    pub = record.publications[-1]
    return HubSource(pub.repo, pub.commit_sha or pub.revision, WEIGHT_NAME, record.sha256)


def pulled_source(record: Any, registry: Registry) -> HubSource | None:
    """The commit and file an adapter was pulled from (`lorahub pull` kept the bytes as they were)."""
    if record.source != "hub" or not record.sha256:
        return None
    for edge in registry.lineage(record.ref):
        details = edge.details or {}
        mine = edge.child_kind == "adapter" and edge.child_id == str(record.id)
        if (
            mine
            and edge.relation == "pulled-from"
            and details.get("commit")
            and details.get("file")
        ):
            repo = details.get("repo") or edge.parent_id
            return HubSource(repo, details["commit"], details["file"], record.sha256)
    return None


def readable(path: str) -> bool:
    """Whether this machine can read the file at `path`."""
    return os.path.isfile(path) and os.access(path, os.R_OK)


class ReplicaFiles:
    """Replica side: each adapter's file on this machine, fetched from the Hub when the mode says so."""

    def __init__(self, mode: str = "path"):
        self.mode = check_mode(mode)
        self.fetched: dict[tuple[str, HubSource], str] = {}  # checked once per replica
        self.lock = threading.Lock()

    def resolve(
        self, specs: list[AdapterSpec], sources: dict[str, HubSource] | None
    ) -> list[AdapterSpec]:
        """`specs` with the path of a Hub-cached file where the mode and a source say so."""
        sources = sources or {}
        return [self.one(spec, sources.get(spec.key)) for spec in specs]

    def one(self, spec: AdapterSpec, source: HubSource | None) -> AdapterSpec:
        if source is None or self.mode == "path":
            return spec
        if self.mode == "auto" and readable(spec.path):
            return spec
        return dataclasses.replace(spec, path=self.fetch(spec.key, source))

    def fetch(self, key: str, source: HubSource) -> str:
        """The local path of `source` (downloaded and checked the first time)."""
        from lorahub.hub.cache import fetch_published

        with self.lock:
            known = self.fetched.get((key, source))
            if known is not None and os.path.isfile(known):
                return known
            path = str(
                fetch_published(source.repo, source.filename, source.revision, source.sha256)
            )
            self.fetched[(key, source)] = path
            return path
