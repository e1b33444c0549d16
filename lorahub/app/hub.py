"""The Hub use cases: push a registered adapter or mix (staged from the registry, the publication
recorded), and pull one (downloaded, registered with pulled-from lineage)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lorahub.errors import InvalidInputError, LorahubError, NotFoundError

if TYPE_CHECKING:
    from lorahub.hub.pull import Pulled
    from lorahub.hub.push import Progress, PushResult
    from lorahub.hub.stage import Staged
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


def push_adapter(
    ref: str,
    repo: str,
    *,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    also: Iterable[str] = (),
    dry_run: bool = False,
    license: str | None = None,
    token: str | None = None,
    registry: Registry | None = None,
    progress: Progress = None,
    recipe: bool = False,
) -> PushResult:
    """Publish a registered adapter (or a mix: baked, or with `recipe` its JSON recipe) to a Hub
    repo and record the publication (in `registry`, or the default registry when None)."""
    from lorahub.hub import client
    from lorahub.hub.push import PushResult, check_also, publish, repo_url
    from lorahub.registry import Registry

    client.check_repo_id(repo)
    also_t = check_also(also)
    rev = client.check_revision(revision) or "main"
    reg = registry or Registry()
    tmp = Path(tempfile.mkdtemp(prefix="lorahub-push-"))
    try:
        staged, card = _stage(reg, ref, repo, tmp, (also_t, license, recipe))
        files = tuple(staged.hub_files)
        url = repo_url(repo, rev)
        if dry_run:
            return PushResult(staged.ref, staged.kind, repo, rev, url, card, files, dry_run=True)
        tok = client.resolve_token(token)
        sha, commit_url, uploaded = publish(
            staged, repo, rev, private=private, message=message, token=tok, progress=progress
        )
        reg.record_publication(staged.ref, repo, rev, sha, url, kind=staged.kind)
        return PushResult(
            staged.ref,
            staged.kind,
            repo,
            rev,
            url,
            card,
            files,
            False,
            sha,
            commit_url,
            bool(uploaded),
            tuple(uploaded),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if registry is None:
            reg.close()


def _stage(
    reg: Registry,
    ref: str,
    repo: str,
    tmp: Path,
    how: tuple[tuple[str, ...], str | None, bool],
) -> tuple[Staged, str]:
    """Stage an adapter, or a mix when `ref` names one (how = also formats, license, recipe)."""
    from lorahub.hub.mixes import stage_mix
    from lorahub.hub.push import stage_adapter

    also, license, recipe = how
    try:
        record = reg.get_adapter(ref)
    except NotFoundError:
        try:
            mix = reg.get_mix(ref)
        except NotFoundError:
            raise NotFoundError(f"no adapter or mix named {ref!r}") from None
        records = [reg.get_adapter(m.ref) for m in mix.members]
        specs = None if recipe else reg.resolve_members(list(mix.members))
        return stage_mix((mix, records, specs), repo, tmp, license, recipe)
    if recipe:
        raise InvalidInputError(f"--recipe is for mixes; {ref!r} is an adapter")
    entry = (record, reg.preview_path(record.ref), reg.lineage(record.ref))
    return stage_adapter(entry, repo, tmp, also, license)
