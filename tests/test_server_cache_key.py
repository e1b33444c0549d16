"""Issue 17, item 1: two adapters with equal tensors and another alpha never share a cache entry.

The alpha of a diffusers LoRA lives in its `lora_adapter_metadata`, outside the tensors: the two
files have the same AutoV3 and tensor hash. Through a fresh server in both request orders, each
name gets its own image, equal to what `lorahub generate` (its own process state) writes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.numpy import load_file, save_file

from lorahub.registry import Registry
from lorahub.server import create_app
from tests.server_fixtures import SMALL, TEST_HOSTS, decode

BODY = {"prompt": "a castle", "seed": 3, **SMALL}


def with_alpha(src: Path, dest: Path, alpha: float) -> Path:
    """`src` with its UNet `lora_alpha` set to `alpha` in the header; the tensors unchanged."""
    from safetensors import safe_open

    with safe_open(str(src), "np") as f:
        metadata = dict(f.metadata())
    config = json.loads(metadata["lora_adapter_metadata"])
    config["unet.lora_alpha"] = alpha
    metadata["lora_adapter_metadata"] = json.dumps(config)
    save_file(load_file(str(src)), str(dest), metadata=metadata)
    return dest


@pytest.fixture
def twins(example_adapters, lorahub_home, tmp_path) -> dict[str, str]:
    src = example_adapters["example-style"]
    with Registry() as reg:
        low = reg.add_adapter(with_alpha(src, tmp_path / "low.safetensors", 4.0), name="alpha-low")
        high = reg.add_adapter(
            with_alpha(src, tmp_path / "high.safetensors", 32.0), name="alpha-high"
        )
    assert low.tensor_sha256 == high.tensor_sha256 and low.autov3 == high.autov3
    assert low.key != high.key
    return {"alpha-low": low.autov3, "alpha-high": high.autov3}


def server_images(order: list[str], tmp_path: Path) -> dict[str, np.ndarray]:
    """Each name's image from a fresh engine and app, requested in `order`."""
    from lorahub.inference import Engine

    out = {}
    with Engine(base="tiny", device="cpu", dtype="fp32") as engine:
        app = create_app(engine=engine, static_dir=tmp_path / "no-page", allowed_hosts=TEST_HOSTS)
        with TestClient(app) as client:
            for name in order:
                res = client.post(
                    "/v1/generate", json={**BODY, "adapters": [{"name": name, "weight": 1.0}]}
                )
                assert res.status_code == 200, res.text
                out[name] = np.asarray(decode(res.json()["images"][0]))
    return out


def cli_image(name: str, tmp_path: Path) -> np.ndarray:
    from lorahub.cli import main

    out = tmp_path / f"cli-{name}.png"
    args = ["generate", BODY["prompt"], "-a", f"{name}:1.0", "--steps", "2", "--size", "64x64"]
    args += ["--seed", "3", "--device", "cpu", "--dtype", "fp32", "-o", str(out)]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return np.asarray(Image.open(io.BytesIO(out.read_bytes())))


def test_alpha_twins_get_their_own_weights_in_both_orders(twins, one_thread, tmp_path) -> None:
    first = server_images(["alpha-low", "alpha-high"], tmp_path)
    second = server_images(["alpha-high", "alpha-low"], tmp_path)
    cli = {name: cli_image(name, tmp_path) for name in twins}
    for name in twins:
        assert np.array_equal(first[name], second[name]), name
        assert np.array_equal(first[name], cli[name]), name
    gap = np.abs(first["alpha-low"].astype(float) - first["alpha-high"].astype(float)).mean()
    assert gap > 0.1  # alpha 4 vs 32: visibly different images
