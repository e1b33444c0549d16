"""Shared pieces of the in-process server tests (fixtures loaded by conftest through `pytest_plugins`):
a real engine on the tiny base, a registry with the example adapters, a TestClient, and helpers for
the error shape and the metrics text."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.numpy import save_file

from lorahub.registry import Registry
from lorahub.server import create_app

SMALL = {"steps": 2, "width": 64, "height": 64}
TOKEN = "s3cret-token"
TEST_HOSTS = ("testserver",)  # what TestClient sends as Host; not a production default


@pytest.fixture(scope="module")
def server_engine(tiny_sd1):
    """One real engine on the tiny base for the whole module (its pipeline loads once).

    One torch thread while it runs: the tiny model gains nothing from two, and on 2 shared cores
    spinning OpenMP threads make each generation ~30x slower."""
    import torch

    from lorahub.inference import Engine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    eng = Engine(base="tiny", device="cpu", dtype="fp32")
    yield eng
    eng.close()
    torch.set_num_threads(threads)


@pytest.fixture
def registered_examples(example_adapters, lorahub_home) -> dict[str, Path]:
    """The example adapters registered_examples in this test's registry, tagged `demo`, with trigger words."""
    from lorahub.examples import DEMO_ADAPTERS

    words = {spec.name: list(spec.trigger_words) for spec in DEMO_ADAPTERS}
    with Registry() as reg:
        for name, path in example_adapters.items():
            reg.add_adapter(path, name=name, tags=["demo"], trigger_words=words[name])
    return example_adapters


@pytest.fixture
def server_client(server_engine, registered_examples, tmp_path):
    """A client of an app on this test's registry, with no web page folder."""
    app = create_app(
        engine=server_engine, static_dir=tmp_path / "no-page", allowed_hosts=TEST_HOSTS
    )
    with TestClient(app) as c:
        yield c


def write_sd1_lora(path: Path) -> Path:
    """A small kohya LoRA whose shapes say SD 1.x (cross-attention 768): the wrong family here."""
    rng = np.random.default_rng(0)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file(
        {
            f"{key}.lora_down.weight": rng.standard_normal((4, 768)).astype(np.float16),
            f"{key}.lora_up.weight": rng.standard_normal((320, 4)).astype(np.float16),
            f"{key}.alpha": np.array(2.0, dtype=np.float16),
        },
        str(path),
    )
    return path


def error_of(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert the one error shape and status; return the message."""
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"code", "message"} and err["message"]
    if code:
        assert err["code"] == code
    return err["message"]


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$'
)


def parse_prometheus(text: str) -> dict[tuple[str, tuple], float]:
    """Parse the text format strictly: every line is a comment or one sample."""
    out: dict[tuple[str, tuple], float] = {}
    for line in text.strip().splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE_RE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or "")))
        out[(match.group(1), labels)] = float(match.group(3))
    return out
