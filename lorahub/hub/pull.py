"""Pulling an adapter from a Hub repo: the weight file chosen, downloaded, hash-checked, its card
read (lorahub.app.hub registers it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.errors import BadFileError, InvalidInputError, LorahubError, NotFoundError
from lorahub.hub import client
from lorahub.hub.stage import WEIGHT_NAME, matches_remote

NOT_WEIGHTS = ("scheduler", "optimizer", "checkpoint")  # as diffusers' weight-name guess
GENERIC_TAGS = {
    "lora",
    "text-to-image",
    "diffusers",
    "template:sd-lora",
    "stable-diffusion",
    "lorahub-mix",
}


@dataclass(frozen=True)
class CardFacts:
    """What a repo's card says: trigger words, base model, description, tags."""

    trigger_words: tuple[str, ...] = ()
    base_model: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()


def pick_weight_file(repo: str, files: list[str], filename: str | None = None) -> str:
    """The weight file to pull, chosen as diffusers' `load_lora_weights` does; ambiguity is an error."""
    candidates = [
        f for f in files if f.endswith(".safetensors") and not any(s in f for s in NOT_WEIGHTS)
    ]
    if filename:
        if filename not in files:
            listed = ", ".join(candidates) or "none"
            raise NotFoundError(f"{repo} has no file {filename!r} (weight files: {listed})")
        return filename
    if WEIGHT_NAME in candidates:
        return WEIGHT_NAME
    named = [f for f in candidates if f.endswith(WEIGHT_NAME)]
    candidates = named or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        pickles = [f for f in files if f.endswith((".bin", ".ckpt", ".pt", ".pth"))]
        extra = (
            f" (only pickle files: {', '.join(pickles)}; lorahub pulls safetensors)"
            if pickles
            else ""
        )
        raise NotFoundError(f"{repo} has no .safetensors weight file{extra}")
    raise InvalidInputError(
        f"{repo} has several weight files ({', '.join(sorted(candidates))}): choose one with --file NAME"
    )


def default_name(repo: str) -> str:
    """An adapter name from a repo id: its name part, made valid."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", repo.split("/")[-1]).lstrip("._-")
    return name[:100] or "hub-adapter"


def read_card(path: Path | None) -> CardFacts:
    """Trigger words (instance_prompt), base model, first paragraph and tags from a README.md."""
    if path is None:
        return CardFacts()
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(path)
    except Exception:  # noqa: BLE001 - a broken card is not a reason to refuse the weights
        return CardFacts()
    data = card.data.to_dict()
    prompt = data.get("instance_prompt")
    prompts = prompt if isinstance(prompt, list) else [prompt] if prompt else []
    words = tuple(dict.fromkeys(w.strip() for p in prompts for w in str(p).split(",") if w.strip()))
    base = data.get("base_model")
    base = base[0] if isinstance(base, list) and base else base
    tags = tuple(t for t in data.get("tags") or [] if isinstance(t, str) and valid_tag(t))
    return CardFacts(words, str(base) if base else None, first_paragraph(card.text), tags)


def valid_tag(tag: str) -> bool:
    """Whether a card tag is worth keeping as a registry tag."""
    from lorahub.formats import BASE_FAMILIES
    from lorahub.registry.adapters import TAG_RE

    return (
        tag not in GENERIC_TAGS
        and tag not in BASE_FAMILIES
        and ":" not in tag
        and bool(TAG_RE.match(tag))
    )


def first_paragraph(text: str, limit: int = 500) -> str | None:
    """The first prose paragraph of a card body (headings, code and tables skipped)."""
    for block in re.split(r"\n\s*\n", text or ""):
        block = block.strip()
        if block and not block.startswith(("#", "```", "|", "<", "!", "-", "*")):
            return " ".join(block.split())[:limit]
    return None


def verify_download(local: Path, remote: Any, what: str) -> None:
    """Refuse a download whose bytes differ from what the Hub lists (sha256 for LFS, git id otherwise)."""
    if remote is None:
        return
    if not matches_remote(local, remote):
        raise BadFileError(f"downloaded {what} does not match the Hub's hash; try again")


@dataclass(frozen=True)
class Remote:
    """A repo commit and the weight file to pull from it (the Hub asked once)."""

    repo: str
    revision: str | None
    commit: str
    weight: str
    files: tuple[str, ...]
    api: Any
    token: str | None


@dataclass(frozen=True)
class Pulled:
    """A verified download: the local weights, what the card says, and where they came from."""

    local: Path
    card: CardFacts
    source: dict[str, Any]  # repo, revision, commit, file: the pulled-from lineage's details
    where: str  # `repo/file`, the name a user knows the file by


def find_weights(
    repo: str, revision: str | None, filename: str | None, token: str | None
) -> Remote:
    """The commit of `repo@revision` and its weight file (chosen as diffusers does)."""
    tok = client.resolve_token(token)
    api = client.hf_api(tok)
    info = client.call(
        lambda: api.model_info(repo, revision=revision), f"read {repo}", token=tok, repo=repo
    )
    files = [s.rfilename for s in info.siblings or []]
    weight = pick_weight_file(repo, files, filename)
    return Remote(repo, revision, info.sha, weight, tuple(files), api, tok)


def download_adapter(remote: Remote, folder: Path) -> Pulled:
    """Download the weights (and the card, when there is one) into `folder`, hash-checked."""
    r = remote
    local = download(r.api, r.repo, r.weight, r.commit, folder, r.token)
    card = read_card(
        download(r.api, r.repo, "README.md", r.commit, folder, r.token)
        if "README.md" in r.files
        else None
    )
    source = {
        "repo": r.repo,
        "revision": r.revision or "main",
        "commit": r.commit,
        "file": r.weight,
    }
    return Pulled(local, card, source, f"{r.repo}/{r.weight}")


def name_as_known(exc: LorahubError, local: Path, where: str) -> None:
    """Name the file in `exc`'s message as the user knows it (`repo/file`), not by its temp path."""
    exc.message = exc.message.replace(str(local), where)
    if isinstance(exc, BadFileError) and where not in exc.message:
        exc.message = f"{where}: {exc.message}"
    exc.args = (exc.message,)


def download(
    api: Any, repo: str, filename: str, commit: str, folder: Path, token: str | None
) -> Path:
    """Download one file of a commit into `folder` and check it against the Hub's listing."""
    from huggingface_hub.hf_api import RepoFile

    what = f"{repo}/{filename}"
    local = client.call(
        lambda: api.hf_hub_download(repo, filename, revision=commit, local_dir=folder),
        f"download {what}",
        token=token,
        repo=repo,
    )
    listed = client.call(
        lambda: api.get_paths_info(repo, [filename], revision=commit),
        f"read {repo}",
        token=token,
        repo=repo,
    )
    verify_download(Path(local), next((r for r in listed if isinstance(r, RepoFile)), None), what)
    return Path(local)
