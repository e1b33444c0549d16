"""Pytest fixtures for the local Hub server (loaded by conftest through `pytest_plugins`).

- `hub_server` (session): the running HubServer on the port in `HF_ENDPOINT`.
- `hub` (function): the same server, reset (no repos, regular uploads, no failures, empty log),
  with `HF_TOKEN` set to a valid token for user `HUB_USER`; a server crash fails the test.
- `hub_repo_id` (function): a fresh, not yet created repo id `HUB_USER/test-<n>`.
- `hub_lfs` (function): `hub` in LFS mode with Xet switched off for this test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.hub_server import HUB_TOKEN, HUB_USER, HubServer

_REPO_NUMBERS = itertools.count()


def disable_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make huggingface_hub upload/download over plain HTTP/LFS instead of Xet, for one test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def use_lfs(hub: HubServer, monkeypatch: pytest.MonkeyPatch, threshold: int = 10_000) -> HubServer:
    """Answer `lfs` for files over `threshold` bytes or weight files, and switch Xet off."""
    disable_xet(monkeypatch)
    hub.lfs_mode = True
    hub.lfs_threshold = threshold
    return hub


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """The local Hub server, on the port conftest reserved and exported as HF_ENDPOINT."""
    endpoint = urlsplit(os.environ["HF_ENDPOINT"])
    server = HubServer(port=endpoint.port or 0, host=endpoint.hostname or "127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The server reset to defaults, with a valid `HF_TOKEN`; fails the test if the server crashed."""
    hub_server.reset()
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    yield hub_server
    if hub_server.errors:
        pytest.fail("local Hub server bug:\n" + "\n".join(hub_server.errors), pytrace=False)


@pytest.fixture
def hub_lfs(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """`hub` answering `lfs` for files over 10 kB or *.safetensors, Xet off."""
    return use_lfs(hub, monkeypatch)


@pytest.fixture
def hub_repo_id(hub: HubServer) -> str:
    """A repo id no test has used in this session (the repo is not created)."""
    return f"{HUB_USER}/test-{os.getpid()}-{next(_REPO_NUMBERS)}"
