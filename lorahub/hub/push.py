"""Pushing an adapter (or a mix) to a Hub repo: stage the files and commit only what changed
(lorahub.app.hub reads the registry and records the publication)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.errors import InvalidInputError, NotFoundError
from lorahub.hub import client
from lorahub.hub.card import HubFile, adapter_card
from lorahub.hub.stage import WEIGHT_NAME, Staged, matches_remote

if TYPE_CHECKING:
    from lorahub.registry.records import AdapterRecord, LineageEdge

ALSO_FORMATS = ("kohya",)
DROP_METADATA = ("format", "lora_adapter_metadata")  # rewritten by the writer for the new layout
Progress = Callable[..., None] | None


@dataclass(frozen=True)
class PushResult:
    """What a push did (or, with dry_run, would do)."""

    ref: str
    kind: str  # adapter | mix
    repo: str
    revision: str
    url: str
    card: str
    files: tuple[HubFile, ...]
    dry_run: bool = False
    commit_sha: str | None = None
    commit_url: str | None = None
    changed: bool = False
    uploaded: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "repo": self.repo,
            "revision": self.revision,
            "url": self.url,
            "commit_sha": self.commit_sha,
            "commit_url": self.commit_url,
            "changed": self.changed,
            "dry_run": self.dry_run,
            "uploaded": list(self.uploaded),
            "files": [f.to_json() for f in self.files],
            "card": self.card,
        }


def check_also(also: Iterable[str]) -> tuple[str, ...]:
    """Validate `--also` formats."""
    out = tuple(dict.fromkeys(a.strip().lower() for a in also if a.strip()))
    for fmt in out:
        if fmt not in ALSO_FORMATS:
            raise InvalidInputError(f"invalid --also {fmt!r}: use {', '.join(ALSO_FORMATS)}")
    return out


def write_weights(record: AdapterRecord, dest: Path, fmt: str) -> Path:
    """`record`'s weights in `fmt` at `dest`: the registered file itself when already in that format."""
    src = Path(record.path)
    if not src.is_file():
        raise NotFoundError(f"the file of {record.ref} is missing: {src} (run `lorahub verify`)")
    if record.format == fmt:
        return src
    from lorahub.formats import open_adapter, write_adapter

    family = record.base_family if record.base_family != "unknown" else None
    meta = {k: v for k, v in (record.metadata or {}).items() if k not in DROP_METADATA}
    with open_adapter(src) as reader:
        write_adapter(reader.modules(), dest, format=fmt, metadata=meta, base_family=family)
    return dest


def kohya_name(record: AdapterRecord) -> str:
    """The kohya file's name in the repo: the adapter's name, as A1111 shows it."""
    stem = record.name if record.name != "pytorch_lora_weights" else f"{record.name}_kohya"
    return f"{stem}.safetensors"


def stage_adapter(
    entry: tuple[AdapterRecord, Path | None, Sequence[LineageEdge]],
    repo: str,
    tmp: Path,
    also: tuple[str, ...],
    license: str | None,
) -> tuple[Staged, str]:
    """Stage an adapter given as (record, preview path, lineage): weights (diffusers), the
    optional kohya file, the preview and the card."""
    record, preview, lineage = entry
    staged = Staged(record.ref, "adapter")
    staged.add(write_weights(record, tmp / WEIGHT_NAME, "diffusers"), WEIGHT_NAME, "weights")
    if "kohya" in also:
        name = kohya_name(record)
        staged.add(write_weights(record, tmp / "kohya" / name, "kohya"), name, "kohya")
    if preview is not None and preview.is_file():
        staged.add(preview, f"images/preview{preview.suffix.lower()}", "image")
    card = adapter_card(record, repo, staged.hub_files, lineage, license=license)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    staged.add(tmp / "README.md", "README.md", "card")
    return staged, card


def repo_url(repo: str, revision: str) -> str:
    """The repo's page on the Hub (the branch's tree for a non-main revision)."""
    from urllib.parse import quote

    base = f"{client.endpoint()}/{repo}"
    return base if revision == "main" else f"{base}/tree/{quote(revision, safe='')}"


def publish(
    staged: Staged,
    repo: str,
    revision: str,
    *,
    private: bool,
    message: str | None,
    token: str | None,
    progress: Progress = None,
) -> tuple[str, str, list[str]]:
    """Create the repo/branch if needed and commit the files that differ: (commit sha, url, uploaded)."""
    api = client.hf_api(token)
    step = progress or (lambda *a, **k: None)
    step(0, total=3, status="creating repo")
    client.call(
        lambda: api.create_repo(repo, private=private, exist_ok=True),
        f"create {repo}",
        token=token,
        repo=repo,
    )
    if revision != "main":
        client.call(
            lambda: api.create_branch(repo, branch=revision, exist_ok=True),
            f"create branch {revision}",
            token=token,
            repo=repo,
        )
    step(1, status="comparing files")
    changed = changed_files(api, staged, repo, revision, token)
    step(1, status=f"uploading {len(changed)} file(s)" if changed else "up to date")
    if not changed:
        info = client.call(
            lambda: api.repo_info(repo, revision=revision), f"read {repo}", token=token, repo=repo
        )
        step(1, status="done")
        return str(info.sha), f"{client.endpoint()}/{repo}/commit/{info.sha}", []
    summary = message or f"Upload {staged.ref} with lorahub"
    commit = client.call(
        lambda: _commit(api, repo, revision, changed, summary),
        f"push to {repo}",
        token=token,
        repo=repo,
    )
    step(1, status="done")
    return str(commit.oid), str(commit.commit_url), [f.path_in_repo for f, _ in changed]


def _commit(
    api: Any, repo: str, revision: str, files: list[tuple[HubFile, Path]], summary: str
) -> Any:
    """One commit of the given files (fresh operations on every attempt)."""
    from huggingface_hub import CommitOperationAdd

    ops = [
        CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(p)) for f, p in files
    ]
    return api.create_commit(repo, ops, commit_message=summary, revision=revision)


def changed_files(
    api: Any, staged: Staged, repo: str, revision: str, token: str | None
) -> list[tuple[HubFile, Path]]:
    """The staged files whose bytes differ from the repo's (LFS by sha256, regular by git blob id)."""
    from huggingface_hub.hf_api import RepoFile

    paths = [f.path_in_repo for f, _ in staged.files]
    remote = client.call(
        lambda: api.get_paths_info(repo, paths, revision=revision),
        f"read {repo}",
        token=token,
        repo=repo,
    )
    by_path = {r.path: r for r in remote if isinstance(r, RepoFile)}
    out = []
    for entry, local in staged.files:
        r = by_path.get(entry.path_in_repo)
        same = r is not None and r.size == entry.size and matches_remote(local, r, entry.sha256)
        if not same:
            out.append((entry, local))
    return out
