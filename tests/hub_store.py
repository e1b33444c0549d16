"""In-memory repos with on-disk blobs for the local Hub server: commits, refs, trees, cards."""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pth filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zip filter=lfs diff=lfs merge=lfs -text\n"
)


class HubError(Exception):
    """An HTTP error the server answers with (status, X-Error-Code, message)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra: dict[str, Any] = {}


def git_blob_oid(data: bytes) -> str:
    """The git sha1 of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that stands in the git tree for an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def iso_now() -> str:
    """The current UTC time in the Hub's date format."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Blob:
    """One file's content in a commit: hashes, size, where its bytes live, whether it is LFS."""

    sha256: str
    size: int
    git_oid: str
    path: Path
    lfs: bool

    @property
    def tree_oid(self) -> str:
        """The oid git would show in the tree (the pointer's sha1 for LFS files)."""
        return git_blob_oid(lfs_pointer(self.sha256, self.size)) if self.lfs else self.git_oid

    @property
    def etag(self) -> str:
        """The ETag the resolve endpoint sends: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.git_oid

    def tree_entry(self, path: str) -> dict[str, Any]:
        """The file's entry in a tree listing."""
        entry: dict[str, Any] = {
            "type": "file",
            "oid": self.tree_oid,
            "size": self.size,
            "path": path,
        }
        if self.lfs:
            pointer_size = len(lfs_pointer(self.sha256, self.size))
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": pointer_size}
        return entry


@dataclass(frozen=True)
class Commit:
    """A commit: its id, parent, message, date and the full file map at that point."""

    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    author: str
    files: dict[str, Blob]

    def as_json(self) -> dict[str, Any]:
        """The commit as the commits-listing endpoint shows it."""
        return {
            "id": self.oid,
            "title": self.title,
            "message": self.message,
            "date": self.date,
            "authors": [{"user": self.author}],
        }


@dataclass
class Repo:
    """A model repo: visibility, commits by id, branches and tags."""

    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """The commit a branch, tag, `refs/heads/x`, `refs/tags/x` or commit id names."""
        for prefix, table in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in table:
                return self.commits[table[revision[len(prefix) :]]]
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and len(revision) >= 7:
            matches = [c for c in self.commits if c.startswith(revision.lower())]
            oid = matches[0] if len(matches) == 1 else None
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]

    def history(self, revision: str) -> list[Commit]:
        """Commits reachable from `revision`, newest first."""
        out, commit = [], self.resolve(revision)
        while True:
            out.append(commit)
            if commit.parent is None:
                return out
            commit = self.commits[commit.parent]


class HubStore:
    """All repos of the server plus a content-addressed blob folder; safe across threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self._counter = itertools.count()
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        """Forget every repo (blob files stay; they are content-addressed)."""
        with self.lock:
            self.repos.clear()

    def put_blob(self, data: bytes, lfs: bool) -> Blob:
        """Store bytes once by sha256 and describe them."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / sha
        if not path.exists():
            tmp = path.with_suffix(f".tmp{next(self._counter)}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return Blob(sha, len(data), git_blob_oid(data), path, lfs)

    def lfs_blob(self, sha256: str, size: int) -> Blob:
        """A blob already uploaded through the LFS PUT action, as an LFS file."""
        path = self.root / "blobs" / sha256
        if not path.exists() or path.stat().st_size != size:
            raise HubError(422, f"LFS object {sha256} was not uploaded", "LfsObjectNotFound")
        return Blob(sha256, size, git_blob_oid(path.read_bytes()), path, True)

    def has_blob(self, sha256: str) -> bool:
        """Whether bytes with this sha256 are stored."""
        return (self.root / "blobs" / sha256).exists()

    def create_repo(self, repo_id: str, private: bool, author: str) -> Repo:
        """Make a repo with the Hub's initial `.gitattributes` commit; 409 if it exists."""
        with self.lock:
            if repo_id in self.repos:
                raise HubError(409, "You already created this model repo", None)
            repo = Repo(repo_id, private, iso_now())
            self.repos[repo_id] = repo
            files = {".gitattributes": self.put_blob(GITATTRIBUTES, lfs=False)}
            self.add_commit(repo, "main", files, "initial commit", "", author)
            return repo

    def get(self, repo_id: str) -> Repo:
        """The repo, or a RepoNotFound error."""
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def add_commit(
        self, repo: Repo, branch: str, files: dict[str, Blob], title: str, message: str, author: str
    ) -> Commit:
        """Record a commit with this full file map on top of `branch` and move the branch."""
        with self.lock:
            parent = repo.branches.get(branch)
            date = iso_now()
            seed = f"{repo.repo_id}|{parent}|{title}|{message}|{date}|{next(self._counter)}|"
            seed += "|".join(f"{p}:{b.sha256}:{b.lfs}" for p, b in sorted(files.items()))
            oid = hashlib.sha1(seed.encode()).hexdigest()
            commit = Commit(oid, parent, title, message, date, author, dict(files))
            repo.commits[oid] = commit
            repo.branches[branch] = oid
            return commit


def card_data(readme: bytes) -> dict[str, Any] | None:
    """The YAML front matter of a README.md, parsed as the Hub does for `cardData`."""
    import yaml

    text = readme.decode("utf-8", errors="replace").replace("\r\n", "\n")
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---", 4)
    if end == -1:
        return None
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def tree_listing(files: dict[str, Blob], base: str, recursive: bool) -> list[dict[str, Any]]:
    """Entries (files, then folders) under `base` in a commit's file map; 404 if `base` is absent."""
    base = base.strip("/")
    prefix = f"{base}/" if base else ""
    under = {p: b for p, b in files.items() if p.startswith(prefix)}
    if base and not under:
        raise HubError(404, f"{base} does not exist on this revision", "EntryNotFound")
    entries: list[dict[str, Any]] = []
    folders: set[str] = set()
    for path, blob in sorted(under.items()):
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entries.append(blob.tree_entry(path))
    for folder in sorted(folders):
        content = "".join(
            f"{p}{b.tree_oid}" for p, b in sorted(files.items()) if p.startswith(folder + "/")
        )
        oid = hashlib.sha1(content.encode()).hexdigest()
        entries.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
    return sorted(entries, key=lambda e: e["path"])
