"""Adapter files for Ray engine replicas by `repo@revision` from the (local) Hub, sha256-checked.

The replica-side resolution (`ReplicaFiles`) and the ingress-side sources (`hub_sources`) run
here without Ray; tests/test_ray_serve.py makes one round trip through Ray with `auto`.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from lorahub.app.hub import pull_adapter, push_adapter
from lorahub.errors import BadFileError, InvalidInputError
from lorahub.hub import client
from lorahub.registry import Registry
from lorahub.server.ray_files import HubSource, ReplicaFiles, hub_sources
from lorahub.types import MixMember
from tests.hub_server import HUB_TOKEN, HubServer

PROMPT = "a red circle on a blue background"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "BACKOFF_S", 0.01)


@pytest.fixture
def published(hub: HubServer, hub_repo_id: str, example_adapters, tmp_path):
    """example-light copied, registered as `light`, pushed to a private repo; (registry, spec)."""
    local = tmp_path / "light.safetensors"
    shutil.copy(example_adapters["example-light"], local)
    reg = Registry()
    reg.add_adapter(local, name="light")
    push_adapter("light", hub_repo_id, registry=reg, private=True)
    spec = reg.resolve_members([MixMember(ref="light", weight=0.8)])[0]
    yield reg, spec
    reg.close()


def image(engine, specs) -> np.ndarray:
    from lorahub.inference.requests import GenerationRequest

    request = GenerationRequest(
        prompt=PROMPT, adapters=tuple(specs), steps=2, width=64, height=64, seed=7
    )
    return np.asarray(engine.generate(request).images[0])


def test_a_pushed_adapter_reaches_a_replica_without_its_file(
    published, server_engine, hub_repo_id, example_adapters
):
    reg, spec = published
    sources = hub_sources(reg, [spec])
    source = sources[spec.key]
    assert source.repo == hub_repo_id and len(source.revision) == 40  # the pushed commit
    assert source.sha256 == reg.get_adapter("light").sha256
    Path(spec.path).unlink()  # this machine does not have the file
    [fetched] = ReplicaFiles("auto").resolve([spec], sources)
    assert fetched.key == spec.key and fetched.path != spec.path and Path(fetched.path).is_file()
    # the reference reads the registered bytes under another cache key, so both loads are real
    original = str(example_adapters["example-light"])
    reference = dataclasses.replace(spec, path=original, key=spec.key + ":reference")
    with_hub, with_file = image(server_engine, [fetched]), image(server_engine, [reference])
    assert np.array_equal(with_hub, with_file)
    assert not np.array_equal(with_hub, image(server_engine, []))  # the adapter did something


def test_modes_path_auto_and_hub(published, example_adapters):
    reg, spec = published
    sources = hub_sources(reg, [spec])
    assert ReplicaFiles("path").resolve([spec], sources) == [spec]  # never the Hub
    assert ReplicaFiles("auto").resolve([spec], sources) == [spec]  # readable here: by path
    [from_hub] = ReplicaFiles("hub").resolve([spec], sources)  # always the Hub
    assert from_hub.path != spec.path
    assert Path(from_hub.path).read_bytes() == Path(spec.path).read_bytes()
    assert ReplicaFiles("hub").resolve([spec], {}) == [spec]  # no publication: by path
    with pytest.raises(InvalidInputError, match="--adapters-from"):
        ReplicaFiles("ftp")


def test_a_hub_file_that_is_not_the_registered_one_is_refused(published, monkeypatch):
    reg, spec = published
    source = hub_sources(reg, [spec])[spec.key]
    wrong = HubSource(source.repo, source.revision, source.filename, "0" * 64)
    Path(spec.path).unlink()
    with pytest.raises(BadFileError) as caught:
        ReplicaFiles("auto").resolve([spec], {spec.key: wrong})
    message = caught.value.message
    assert "not the registered file" in message and "nothing was applied" in message
    assert source.repo in message and HUB_TOKEN not in message


def test_a_private_repo_needs_the_token_of_the_replicas_environment(published, monkeypatch):
    reg, spec = published
    sources = hub_sources(reg, [spec])
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrong0123456789")
    with pytest.raises(Exception) as caught:
        ReplicaFiles("hub").resolve([spec], sources)
    assert "not authorized" in str(caught.value) and "hf_wrongwrong" not in str(caught.value)


def test_a_pulled_adapter_is_fetched_from_where_it_was_pulled(published, hub_repo_id):
    reg, _ = published
    record = pull_adapter(hub_repo_id, name="pulled", registry=reg)
    spec = reg.resolve_members([MixMember(ref="pulled")])[0]
    reg.db.execute("DELETE FROM publications")  # only the pull says where it is on the Hub
    reg.db.conn.commit()
    source = hub_sources(reg, [spec])[spec.key]
    assert source.repo == hub_repo_id and source.sha256 == record.sha256
    assert source.filename == "pytorch_lora_weights.safetensors"
