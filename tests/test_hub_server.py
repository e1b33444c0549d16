"""The local Hub server against the real huggingface_hub client: uploads, downloads, errors."""

from __future__ import annotations

import os
import random
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, ModelCard, ModelCardData, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url

from tests.hub_server import HUB_TOKEN, HUB_USER, HubServer

README = """---
base_model: tiny/base
library_name: diffusers
license: mit
tags:
- lora
- text-to-image
instance_prompt: a photo of sks
---
# my adapter

Made for tests.
"""


def _blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _folder(root: Path, weights: bytes) -> Path:
    (root / "samples").mkdir(parents=True)
    (root / "README.md").write_text(README)
    (root / "pytorch_lora_weights.safetensors").write_bytes(weights)
    (root / "samples" / "0.txt").write_text("sample zero")
    return root


def _commit_posts(hub: HubServer, repo_id: str) -> int:
    return len(hub.calls("POST", f"/api/models/{repo_id}/commit/"))


def test_create_repo_conflict_and_private(hub: HubServer, hub_repo_id: str) -> None:
    api = HfApi()
    url = api.create_repo(hub_repo_id, private=True)
    assert url == f"{hub.url}/{hub_repo_id}" and url.repo_id == hub_repo_id
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(hub_repo_id)
    assert err.value.response.status_code == 409
    assert err.value.response.json()["url"] == url
    assert api.create_repo(hub_repo_id, exist_ok=True) == url
    assert api.model_info(hub_repo_id).private is True
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub_repo_id, token=False)


def test_regular_upload_round_trip_and_idempotent(
    hub: HubServer, hub_repo_id: str, tmp_path: Path
) -> None:
    api, weights = HfApi(), _blob(200_000)
    folder = _folder(tmp_path / "up", weights)
    api.create_repo(hub_repo_id)
    first = api.upload_folder(repo_id=hub_repo_id, folder_path=folder, commit_message="add adapter")
    assert (
        len(first.oid) == 40 and first.commit_url == f"{hub.url}/{hub_repo_id}/commit/{first.oid}"
    )
    assert not hub.calls(contains="/info/lfs/")
    assert _commit_posts(hub, hub_repo_id) == 1

    again = api.upload_folder(repo_id=hub_repo_id, folder_path=folder, commit_message="same again")
    assert again.oid == first.oid and _commit_posts(hub, hub_repo_id) == 1

    local = Path(snapshot_download(hub_repo_id, cache_dir=tmp_path / "cache"))
    assert (local / "pytorch_lora_weights.safetensors").read_bytes() == weights
    assert (local / "samples" / "0.txt").read_text() == "sample zero"
    assert local.name == first.oid


def test_listing_tree_info_and_card(hub: HubServer, hub_repo_id: str, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(hub_repo_id)
    commit = api.upload_folder(repo_id=hub_repo_id, folder_path=_folder(tmp_path, b"w" * 100))
    files = [".gitattributes", "README.md", "pytorch_lora_weights.safetensors", "samples/0.txt"]
    assert sorted(api.list_repo_files(hub_repo_id)) == files
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(hub_repo_id)}
    assert top["samples"] == "RepoFolder" and "samples/0.txt" not in top
    deep = {e.path for e in api.list_repo_tree(hub_repo_id, recursive=True)}
    assert deep == set(files) | {"samples"}
    assert [e.path for e in api.list_repo_tree(hub_repo_id, path_in_repo="samples")] == [
        "samples/0.txt"
    ]
    info = api.model_info(hub_repo_id)
    assert info.sha == commit.oid and info.id == hub_repo_id
    assert sorted(s.rfilename for s in info.siblings or []) == files
    assert info.card_data is not None and info.card_data["base_model"] == "tiny/base"
    assert {"lora", "diffusers"} <= set(info.tags or [])
    refs = api.list_repo_refs(hub_repo_id)
    assert [(b.name, b.target_commit) for b in refs.branches] == [
        ("main", commit.oid)
    ] and refs.converts == []
    assert [c.commit_id for c in api.list_repo_commits(hub_repo_id)][0] == commit.oid
    assert ModelCard.load(hub_repo_id).data.instance_prompt == "a photo of sks"


def test_lfs_upload_round_trip(hub_lfs: HubServer, hub_repo_id: str, tmp_path: Path) -> None:
    api, weights = HfApi(), _blob(200_000, seed=1)
    api.create_repo(hub_repo_id)
    path = tmp_path / "w.safetensors"
    path.write_bytes(weights)
    first = api.upload_file(
        path_or_fileobj=path, path_in_repo="pytorch_lora_weights.safetensors", repo_id=hub_repo_id
    )
    assert hub_lfs.calls("POST", "/info/lfs/objects/batch") and hub_lfs.calls(
        "PUT", "/lfs/objects/"
    )
    assert hub_lfs.calls("POST", "/info/lfs/objects/verify")
    (entry,) = [e for e in api.list_repo_tree(hub_repo_id) if e.path.endswith(".safetensors")]
    assert (
        entry.lfs is not None
        and entry.lfs.sha256 == first_sha(weights)
        and entry.size == len(weights)
    )
    meta = get_hf_file_metadata(hf_hub_url(hub_repo_id, "pytorch_lora_weights.safetensors"))
    assert (
        meta.etag == first_sha(weights)
        and meta.size == len(weights)
        and meta.commit_hash == first.oid
    )
    got = hf_hub_download(hub_repo_id, "pytorch_lora_weights.safetensors", cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == weights

    again = api.upload_file(
        path_or_fileobj=path, path_in_repo="pytorch_lora_weights.safetensors", repo_id=hub_repo_id
    )
    assert again.oid == first.oid and _commit_posts(hub_lfs, hub_repo_id) == 1
    assert len(hub_lfs.calls("PUT")) == 1


def test_lfs_folder_mixes_modes(hub_lfs: HubServer, hub_repo_id: str, tmp_path: Path) -> None:
    api, weights = HfApi(), _blob(50_000, seed=2)
    api.create_repo(hub_repo_id)
    first = api.upload_folder(repo_id=hub_repo_id, folder_path=_folder(tmp_path / "up", weights))
    tree = {e.path: e for e in api.list_repo_tree(hub_repo_id, recursive=True) if hasattr(e, "lfs")}
    assert (
        tree["pytorch_lora_weights.safetensors"].lfs is not None and tree["README.md"].lfs is None
    )
    assert api.upload_folder(repo_id=hub_repo_id, folder_path=tmp_path / "up").oid == first.oid
    local = Path(snapshot_download(hub_repo_id, cache_dir=tmp_path / "c"))
    assert (local / "pytorch_lora_weights.safetensors").read_bytes() == weights


def first_sha(data: bytes) -> str:
    """The sha256 of some bytes, as the LFS oid."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_download_at_commit_and_delete(hub: HubServer, hub_repo_id: str, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(hub_repo_id)
    v1 = api.upload_file(path_or_fileobj=b"one", path_in_repo="f.txt", repo_id=hub_repo_id)
    v2 = api.upload_file(path_or_fileobj=b"two", path_in_repo="f.txt", repo_id=hub_repo_id)
    assert v1.oid != v2.oid
    old = hf_hub_download(hub_repo_id, "f.txt", revision=v1.oid, cache_dir=tmp_path)
    new = hf_hub_download(hub_repo_id, "f.txt", cache_dir=tmp_path)
    assert Path(old).read_bytes() == b"one" and Path(new).read_bytes() == b"two"
    api.create_tag(hub_repo_id, tag="v1", revision=v1.oid)
    assert api.model_info(hub_repo_id, revision="v1").sha == v1.oid
    api.delete_file("f.txt", repo_id=hub_repo_id)
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]
    assert api.list_repo_files(hub_repo_id, revision=v2.oid) == [".gitattributes", "f.txt"]


def test_missing_repo_file_revision(hub: HubServer, hub_repo_id: str, tmp_path: Path) -> None:
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(hub_repo_id, "x.bin", cache_dir=tmp_path)
    api.create_repo(hub_repo_id)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(hub_repo_id, "x.bin", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, ".gitattributes", revision="nope", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(hub_repo_id, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(
            path_or_fileobj=b"x", path_in_repo="x", repo_id=hub_repo_id, revision="nope"
        )


def test_auth(hub: HubServer, hub_repo_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    api = HfApi()
    assert api.whoami()["name"] == HUB_USER
    with pytest.raises(HfHubHTTPError) as err:
        api.whoami(token="hf_wrong")
    assert err.value.response.status_code == 401
    assert httpx.get(f"{hub.url}/api/whoami-v2").status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("someone-else/repo")
    assert err.value.response.status_code == 403
    api.create_repo(hub_repo_id)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=hub_repo_id)
    assert err.value.response.status_code == 401
    assert HUB_TOKEN not in str(err.value)


def test_retries_transient_errors_where_client_does(hub: HubServer, hub_repo_id: str) -> None:
    api = HfApi()
    api.create_repo(hub_repo_id)
    hub.fail("/preupload/", status=503, times=1)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=hub_repo_id)
    assert [c.status for c in hub.calls("POST", "/preupload/")] == [503, 200]
    hub.fail("/commit/", status=503)
    with pytest.raises(
        HfHubHTTPError
    ) as err:  # upload_file/create_commit never retry the commit POST
        api.upload_file(path_or_fileobj=b"y", path_in_repo="y", repo_id=hub_repo_id)
    assert err.value.response.status_code == 503
    hub.fail(f"/api/models/{hub_repo_id}", status=403, method="GET", message="Forbidden by test")
    with pytest.raises(HfHubHTTPError, match="Forbidden by test"):
        api.model_info(hub_repo_id)


def test_model_card_push_and_load(hub: HubServer, hub_repo_id: str) -> None:
    HfApi().create_repo(hub_repo_id)
    data = ModelCardData(
        base_model="tiny/base", library_name="diffusers", tags=["lora"], license="mit"
    )
    card = ModelCard.from_template(data, model_description="A tiny adapter.")
    card.push_to_hub(hub_repo_id)
    loaded = ModelCard.load(hub_repo_id)
    assert loaded.data.base_model == "tiny/base" and loaded.data.tags == ["lora"]
    assert HfApi().model_info(hub_repo_id).card_data["license"] == "mit"


def test_range_requests(hub: HubServer, hub_repo_id: str) -> None:
    HfApi().create_repo(hub_repo_id)
    HfApi().upload_file(path_or_fileobj=b"0123456789", path_in_repo="d.bin", repo_id=hub_repo_id)
    url = f"{hub.url}/{hub_repo_id}/resolve/main/d.bin"
    part = httpx.get(url, headers={"Range": "bytes=3-5"})
    assert part.status_code == 206 and part.content == b"345"
    assert part.headers["Content-Range"] == "bytes 3-5/10"
    head = httpx.head(url)
    assert head.headers["Content-Length"] == "10" and len(head.headers["X-Repo-Commit"]) == 40
    assert os.environ["HF_ENDPOINT"] == hub.url


def test_diffusers_reads_lora_from_server(hub: HubServer, hub_repo_id: str, tmp_path: Path) -> None:
    import torch
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
    from safetensors.torch import save_file

    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_{}.weight"
    tensors = {key.format("A"): torch.ones(4, 8), key.format("B"): torch.full((8, 4), 2.0)}
    save_file(tensors, tmp_path / "w.safetensors")
    HfApi().create_repo(hub_repo_id)
    HfApi().upload_file(
        path_or_fileobj=tmp_path / "w.safetensors",
        path_in_repo="pytorch_lora_weights.safetensors",
        repo_id=hub_repo_id,
    )
    state_dict, _ = StableDiffusionLoraLoaderMixin.lora_state_dict(hub_repo_id)
    assert torch.equal(state_dict[key.format("B")], tensors[key.format("B")])
