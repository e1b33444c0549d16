"""`lorahub serve` batching: concurrent clients with different adapters share denoising loops and
get the images they get alone (at most 1 of 255 per channel, fp32 CPU); a failing member fails
alone; the batch numbers reach /metrics."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lorahub.registry import Registry
from lorahub.server import create_app
from tests.inference_helpers import pixels
from tests.server_fixtures import TEST_HOSTS, decode, error_of, parse_prometheus

SMALL = {"steps": 2, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def adapters(random_adapters) -> dict[str, Path]:
    return random_adapters


@pytest.fixture
def client(adapters, lorahub_home, tmp_path):
    from lorahub.inference import Engine

    with Registry() as reg:
        for name in ("r0", "r1", "r2", "loha"):
            reg.add_adapter(adapters[name], name=name)
        gone = copy_with_metadata(adapters["r2"], tmp_path / "gone.safetensors")
        reg.add_adapter(gone, name="gone")
    gone.unlink()  # registered, then deleted: the engine cannot read it
    engine = Engine(base="tiny", device="cpu", dtype="fp32", max_batch=8, batch_window_ms=50)
    app = create_app(engine=engine, static_dir=tmp_path / "none", allowed_hosts=TEST_HOSTS)
    with TestClient(app) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def copy_with_metadata(src: Path, dest: Path) -> Path:
    """The same tensors in another file (another hash: the engine has not cached it)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as fh:
        metadata = {**(fh.metadata() or {}), "copy": "yes"}
    save_file(load_file(str(src)), str(dest), metadata=metadata)
    return dest


BODIES = [
    {"prompt": "a red circle", "seed": 1},
    {"prompt": "a red circle", "seed": 2, "adapters": [{"name": "r0", "weight": 0.8}]},
    {"prompt": "a blue square <lora:r1:0.4:1.0>", "seed": 3},
    {"prompt": "a green circle", "seed": 4, "adapters": [{"name": "r0"}, {"name": "r2"}]},
    {"prompt": "a red circle", "seed": 5, "adapters": [{"name": "loha", "weight": 0.7}]},
    {"prompt": "a red circle", "seed": 6, "adapters": [{"name": "gone"}]},
]


def test_concurrent_clients_get_their_images_alone(client):
    alone = [client.post("/v1/generate", json={**b, **SMALL}) for b in BODIES]
    assert [r.status_code for r in alone] == [200] * 5 + [404]
    engine = client.engine
    responses: dict[int, object] = {}

    def post(i: int) -> None:
        responses[i] = client.post("/v1/generate", json={**BODIES[i], **SMALL})

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(BODIES))]
    with engine._lock:  # the worker waits on the lock: every request is queued before any runs
        for t in threads:
            t.start()
        for _ in range(2000):
            if engine.queue_depth == len(BODIES):
                break
            threading.Event().wait(0.01)
    for t in threads:
        t.join()
    for i, before in enumerate(alone[:5]):
        now = responses[i]
        assert now.status_code == 200, now.text
        ours = pixels(decode(now.json()["images"][0]).convert("RGB"))
        theirs = pixels(decode(before.json()["images"][0]).convert("RGB"))
        assert np.abs(ours - theirs).max() <= 1
    assert "not found" in error_of(responses[5], 404)  # the failing member failed alone
    batched = [responses[i].json()["record"]["timings"].get("batch") for i in range(5)]
    assert sum(1 for b in batched if b and b > 1) >= 3, batched
    metrics = parse_prometheus(client.get("/metrics").text)
    assert metrics[("lorahub_engine_batches_total", ())] >= 1
    assert metrics[("lorahub_batch_rows_count", ())] >= 1
    assert metrics[("lorahub_batch_wait_seconds_count", ())] >= 1
