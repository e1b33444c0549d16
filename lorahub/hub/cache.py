"""Fetching a published adapter file through huggingface_hub's own cache, checked by its sha256.

What a machine without the registered file does (a Ray engine replica on another node): the
file of `repo@revision` comes from the Hub (HF_ENDPOINT, the token of HF_TOKEN or the stored
login) into the Hub client's cache, and is used only when its bytes are the registered ones.
"""

from __future__ import annotations

from pathlib import Path

from lorahub.errors import BadFileError
from lorahub.hub import client
from lorahub.hub.stage import sha256_file


def fetch_published(repo: str, filename: str, revision: str, sha256: str) -> Path:
    """`filename` of `repo` at `revision`, from the Hub client's cache; BadFileError unless `sha256`."""
    from huggingface_hub import hf_hub_download

    token = client.resolve_token(None)
    what = f"{repo}@{revision}/{filename}"
    local = client.call(
        lambda: hf_hub_download(repo, filename, revision=revision, token=token or None),
        f"download {what}",
        token=token,
        repo=repo,
    )
    got = sha256_file(Path(local))
    if got != sha256:
        raise BadFileError(
            f"{what} is not the registered file (sha256 {got[:12]}, expected {sha256[:12]}); "
            "nothing was applied: push the adapter again or serve its file by path"
        )
    return Path(local)
