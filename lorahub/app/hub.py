"""The pull use case: download an adapter from the Hub and register it with pulled-from lineage."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lorahub.errors import LorahubError

if TYPE_CHECKING:
    from lorahub.hub.pull import Pulled
    from lorahub.registry import AdapterRecord, Registry


def pull_adapter(
    repo: str,
    *,
    revision: str | None = None,
    name: str | None = None,
    filename: str | None = None,
    version: str | None = None,
    force: bool = False,
    token: str | None = None,
    registry: Registry | None = None,
) -> AdapterRecord:
    """Download an adapter from a Hub repo (`owner/name[@rev]`) and register it with source=hub
    (in `registry`, or the default registry when None)."""
    from lorahub import paths
    from lorahub.hub import client
    from lorahub.hub.pull import default_name, download_adapter, find_weights
    from lorahub.registry import Registry
    from lorahub.types import check_name

    repo, at_rev = client.split_repo_revision(repo)
    revision = client.check_revision(revision) or at_rev
    if name:
        check_name(name)
    remote = find_weights(repo, revision, filename, token)
    paths.lorahub_home().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=paths.lorahub_home()))
    reg = registry or Registry()
    try:
        pulled = download_adapter(remote, tmp)
        return register_pulled(reg, pulled, name or default_name(repo), version, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if registry is None:
            reg.close()


def register_pulled(
    registry: Registry, pulled: Pulled, name: str, version: str | None, force: bool
) -> AdapterRecord:
    """Copy the download into the store under `name`, with the card's facts and pulled-from
    lineage to the repo commit; errors name the file as `repo/file`, not its temporary path."""
    from lorahub.hub.pull import name_as_known
    from lorahub.registry import LineageParent

    card = pulled.card
    parent = LineageParent(
        "hub_repo",
        pulled.source["repo"],
        "pulled-from",
        {**pulled.source, "base_model": card.base_model},
    )
    try:
        return registry.add_adapter(
            pulled.local,
            name=name,
            version=version,
            source="hub",
            copy=True,
            force=force,
            trigger_words=list(card.trigger_words) or None,
            description=card.description,
            tags=card.tags,
            lineage=[parent],
        )
    except LorahubError as exc:
        name_as_known(exc, pulled.local, pulled.where)
        raise
