"""Test isolation: no network, no user home; one tiny model and one Hub server per session.

HF_ENDPOINT must be set before huggingface_hub (or diffusers/peft/transformers) is imported,
so this module reserves the local Hub server's port at import time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.serve_process import free_port

HUB_PORT = free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ.pop("HF_TOKEN", None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One torch thread: tests run beside a server subprocess on 2 cores, and oversubscribed OpenMP
# threads spin (a tiny UNet step goes from 0.06 s to seconds).
os.environ.setdefault("OMP_NUM_THREADS", "1")
_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="lorahub-test-cache-"))
os.environ.setdefault("LORAHUB_CACHE", str(_SESSION_CACHE))
os.environ["HF_HOME"] = str(_SESSION_CACHE / "hf-home")

pytest_plugins = [
    "tests.hub_fixtures",  # local Hub server fixtures: hub_server, hub, hub_lfs, ...
    "tests.server_fixtures",  # in-process API fixtures: server_engine, server_client, ...
]

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "lora"


@pytest.fixture(autouse=True)
def lorahub_home(tmp_path_factory, monkeypatch) -> Path:
    """Each test gets its own registry home; the tiny-model cache is shared by the session."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LORAHUB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real-world LoRA files in ../shared/fixtures/lora (a failure in CI if absent)."""
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared fixtures missing in CI: {FIXTURES}")
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_sd1() -> Path:
    """The embedded tiny SD1 pipeline folder (built once per session)."""
    from lorahub.tiny import ensure_tiny

    return ensure_tiny("tiny")


@pytest.fixture(scope="session")
def tiny_sdxl() -> Path:
    """The embedded tiny SDXL pipeline folder (built once per session)."""
    from lorahub.tiny import ensure_tiny

    return ensure_tiny("tiny-sdxl")


@pytest.fixture(scope="session")
def example_adapters(tiny_sd1, tmp_path_factory) -> dict[str, Path]:
    """The demo's two example adapters for tiny-sd1, written once per session."""
    from lorahub.examples import DEMO_ADAPTERS, write_example_adapter

    folder = tmp_path_factory.mktemp("examples")
    return {
        spec.name: write_example_adapter("tiny", folder / f"{spec.name}.safetensors", spec)
        for spec in DEMO_ADAPTERS
    }


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module, even where OMP_NUM_THREADS was set otherwise."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_shapes(tiny_sd1, tmp_path_factory) -> Path:
    """`demo-shapes` trained once per session as `lorahub demo` trains it (purple shapes), in a
    home of its own; returns that home."""
    import torch

    from lorahub.app.demo import train_demo_adapter

    home = tmp_path_factory.mktemp("demo-shapes-home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORAHUB_HOME", str(home))
        train_demo_adapter()
    torch.set_num_threads(threads)
    return home


@pytest.fixture(scope="session")
def random_adapters(tiny_sd1, tmp_path_factory) -> dict[str, Path]:
    """Seeded random LoRAs (r0..r2, r1 with text-encoder layers), a LoHa and a LoCon for tiny-sd1,
    written once per session (the batching, grid and server-batching tests)."""
    import torch

    from tests.inference_helpers import write_random_adapters

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return write_random_adapters(tmp_path_factory.mktemp("random-adapters"))
    finally:
        torch.set_num_threads(threads)
