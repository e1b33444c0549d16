"""What push and pull share: the staged files of an upload and the hash checks against the Hub."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorahub.hub.card import HubFile

WEIGHT_NAME = "pytorch_lora_weights.safetensors"


@dataclass
class Staged:
    """Files ready to upload: each HubFile with the local path holding its bytes."""

    ref: str
    kind: str
    files: list[tuple[HubFile, Path]] = field(default_factory=list)

    def add(self, local: Path, path_in_repo: str, role: str) -> HubFile:
        """Stage one local file under `path_in_repo`."""
        entry = HubFile(path_in_repo, local.stat().st_size, sha256_file(local), role)
        self.files.append((entry, local))
        return entry

    @property
    def hub_files(self) -> list[HubFile]:
        return [f for f, _ in self.files]


def sha256_file(path: Path) -> str:
    """The sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file (what the Hub reports for regular, non-LFS files)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def matches_remote(local: Path, remote: Any, sha256: str | None = None) -> bool:
    """Whether `local` holds the bytes of the Hub's `remote` file (sha256 for LFS, git blob id otherwise).

    `sha256` is the local file's sha256 when the caller already has it.
    """
    if remote.lfs is not None:
        return (sha256 or sha256_file(local)) == remote.lfs.sha256
    return git_blob_sha1(local) == remote.blob_id
