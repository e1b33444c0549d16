"""`lorahub serve` as a real subprocess on a loopback port: HTTP equals the CLI, 32 concurrent
requests over 4 adapter sets equal the same requests sent alone, and the token is required."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lorahub.examples import DEMO_ADAPTERS, ExampleAdapter, write_example_adapter
from lorahub.registry import Registry
from tests.serve_process import lorahub_serve

TOKEN = "e2e-token-4d1f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = {"steps": 3, "width": 64, "height": 64}
EXTRA = (ExampleAdapter("extra-a", 4, 4.0, 21), ExampleAdapter("extra-b", 8, 8.0, 22, True))


@pytest.fixture(scope="module")
def home(tmp_path_factory, example_adapters) -> Path:
    """A lorahub home with the two example adapters and two more (stronger, other seeds) registered."""
    home = tmp_path_factory.mktemp("serve-home")
    folder = tmp_path_factory.mktemp("serve-adapters")
    files = dict(example_adapters)
    for spec in EXTRA:
        files[spec.name] = write_example_adapter(
            "tiny", folder / f"{spec.name}.safetensors", spec, std=0.3
        )
    words = {s.name: list(s.trigger_words) for s in DEMO_ADAPTERS}
    with Registry(home / "registry.db") as reg:
        for name, path in files.items():
            reg.add_adapter(path, name=name, trigger_words=words.get(name))
    return home


@pytest.fixture(scope="module")
def env(home) -> dict[str, str]:
    """The subprocesses' environment: this home, the session's model cache, one torch thread
    (two processes spinning two OpenMP threads each on 2 shared cores run ~30x slower)."""
    return {
        **os.environ,
        "LORAHUB_HOME": str(home),
        "LORAHUB_CACHE": os.environ["LORAHUB_CACHE"],
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="module")
def server(env, home):
    """`python -m lorahub serve --token` on a free loopback port; yields its base URL."""
    log = home / "serve.log"
    with lorahub_serve(env, log, "--token", TOKEN) as (url, _):
        yield url
    assert TOKEN not in log.read_text(errors="replace")


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def generate(client: httpx.Client, body: dict) -> bytes:
    res = client.post("/v1/generate", json=body, headers=AUTH, timeout=300)
    assert res.status_code == 200, res.text
    return base64.b64decode(res.json()["images"][0])


def test_token_required(server) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"ok": True}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        res = httpx.get(f"{server}/v1/adapters", headers=headers)
        assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized"
    res = httpx.post(f"{server}/v1/generate", json={"prompt": "x", **SMALL})
    assert res.status_code == 401
    listed = httpx.get(f"{server}/v1/adapters", headers=AUTH).json()["adapters"]
    assert sorted(a["name"] for a in listed) == [
        "example-light",
        "example-style",
        "extra-a",
        "extra-b",
    ]


def test_http_equals_cli(server, env, tmp_path) -> None:
    body = {
        "prompt": "a red castle",
        "adapters": [{"name": "example-light", "weight": 0.7, "te_weight": 0.4}],
        "seed": 5,
        **SMALL,
    }
    res = httpx.post(
        f"{server}/v1/generate", json=body, headers={**AUTH, "Accept": "image/png"}, timeout=300
    )
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    out = tmp_path / "cli.png"
    cmd = [sys.executable, "-m", "lorahub", "generate", "a red castle", "--adapter", "example-light:unet=0.7,te=0.4",
           "--seed", "5", "--steps", "3", "--width", "64", "--height", "64", "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    http_image, cli_image = Image.open(io.BytesIO(res.content)), Image.open(out)
    assert (
        np.abs(pixels(res.content) - np.asarray(cli_image.convert("RGB"), dtype=np.float64)).mean()
        <= 1.0
    )
    assert http_image.text["parameters"] == cli_image.text["parameters"]
    assert "Lora hashes" in http_image.text["parameters"]


def test_32_concurrent_requests_equal_solo(server) -> None:
    with httpx.Client(base_url=server, limits=httpx.Limits(max_connections=40)) as client:
        mix = {
            "name": "blend",
            "members": [{"ref": "extra-a", "weight": 0.6}, {"ref": "example-style", "weight": 0.4}],
        }
        assert client.post("/v1/mixes", json=mix, headers=AUTH).status_code == 201
        sets = [
            {"adapters": [{"name": "example-style"}]},
            {"adapters": [{"name": "example-light", "weight": 0.8}]},
            {"adapters": [{"name": "extra-a"}, {"name": "extra-b", "weight": 0.5}]},
            {"mix": "blend"},
        ]
        bodies = [
            {"prompt": "a lighthouse", "seed": seed, **SMALL, **s}
            for s in sets
            for seed in (11, 12)
        ]
        solo = [pixels(generate(client, b)) for b in bodies]
        assert (
            np.abs(solo[0] - solo[4]).mean() > 3 and np.abs(solo[2] - solo[6]).mean() > 3
        )  # sets differ
        order = [i for _ in range(4) for i in range(len(bodies))]
        np.random.default_rng(0).shuffle(order)
        with ThreadPoolExecutor(len(order)) as pool:
            images = list(pool.map(lambda i: pixels(generate(client, bodies[i])), order))
        assert len(images) == 32
        for i, image in zip(order, images, strict=True):
            assert np.abs(image - solo[i]).mean() <= 1.0, (
                f"request {i} differs from the same request alone"
            )
        status = client.get("/v1/status", headers=AUTH).json()
        assert status["queue"]["depth"] == 0 and status["generations"] >= 40
