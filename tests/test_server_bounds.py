"""Issue 17, items 6, 7, 9: unchecked values, unbounded work, gone clients, foreign Host headers.

Each former 500 is a 4xx in the error shape (one line in the CLI); a test per bound.
"""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lorahub.app.work import CPU_MAX_WORK, GPU_MAX_WORK, request_work
from lorahub.errors import InvalidInputError
from lorahub.server import create_app
from lorahub.server.errors import ClientGoneError
from lorahub.server.hosts import allowed_hosts, host_allowed
from lorahub.types import MAX_WEIGHT, parse_weighted_ref
from tests.server_fixtures import SMALL, TEST_HOSTS, error_of

# item 6: weights and clip_skip


@pytest.mark.parametrize("weight", ["1e300", "nan", "inf", "-inf", "te=nan", "0.5:1e300", "101"])
def test_prompt_tag_weights_bounded(server_client, weight) -> None:
    body = {"prompt": f"a castle <lora:example-style:{weight}>", **SMALL}
    message = error_of(server_client.post("/v1/generate", json=body), 400, "invalid_input")
    assert "weight" in message


@pytest.mark.parametrize(
    "adapter",
    [
        {"name": "example-style", "weight": 1e300},
        {"name": "example-style", "te_weight": -1e300},
        {"name": "example-style", "block_weights": {"up": 1e300}},
    ],
)
def test_body_weights_bounded(server_client, adapter) -> None:
    error_of(server_client.post("/v1/generate", json={"prompt": "x", "adapters": [adapter]}), 422)


def test_mix_weights_multiplied_past_the_bound(server_client) -> None:
    mix = {"name": "loud", "members": [{"ref": "example-style", "weight": 50}]}
    assert server_client.post("/v1/mixes", json=mix).status_code in (200, 201)
    body = {"prompt": "x <lora:loud:3>", **SMALL}
    assert "±100" in error_of(server_client.post("/v1/generate", json=body), 400)


def test_clip_skip_beyond_the_encoder_is_400(server_client) -> None:
    body = {"prompt": "a castle", "clip_skip": 5, **SMALL}
    message = error_of(server_client.post("/v1/generate", json=body), 400, "invalid_input")
    assert "2 layers" in message and "at most 1" in message
    ok = server_client.post("/v1/generate", json={**body, "clip_skip": 1})
    assert ok.status_code == 200 and ok.json()["record"]["clip_skip"] == 1


def test_one_weight_bound_everywhere() -> None:
    assert parse_weighted_ref(f"a:{MAX_WEIGHT:g}").weight == MAX_WEIGHT
    for text in ("a:1e300", "a:nan", "a:unet=inf", "a:te=101"):
        with pytest.raises(InvalidInputError, match="finite"):
            parse_weighted_ref(text)


def test_engine_refuses_unbounded_spec_weights(tmp_path) -> None:
    from lorahub.inference import GenerationRequest
    from lorahub.types import AdapterSpec

    for kw in ({"weight": float("nan")}, {"te_weight": 1e300}, {"block_weights": {"up": 1e9}}):
        spec = AdapterSpec(name="a", path=str(tmp_path / "a"), key="k", **kw)
        with pytest.raises(InvalidInputError, match="finite"):
            GenerationRequest("x", adapters=[spec]).validate()


@pytest.mark.parametrize(
    "args",
    [
        ["a castle <lora:style:nan>"],
        ["a castle <lora:style:1e300>"],
        ["a castle", "-a", "style:inf"],
        ["a castle", "-a", "style:1e300"],
        ["a castle", "--clip-skip", "5"],
    ],
)
def test_cli_bounds_are_one_line(example_adapters, lorahub_home, tmp_path, args) -> None:
    from lorahub.cli import main
    from lorahub.registry import Registry

    with Registry() as reg:
        reg.add_adapter(example_adapters["example-style"], name="style")
    out = tmp_path / "x.png"
    cmd = ["generate", *args, "--steps", "1", "--size", "32x32", "--device", "cpu", "-o", str(out)]
    res = CliRunner().invoke(main, cmd)
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()


# item 7: work per request


def test_work_formula() -> None:
    from lorahub.inference import GenerationRequest

    four_1024 = GenerationRequest("x", steps=50, n=4, width=1024, height=1024)
    assert request_work(four_1024, "sdxl") == GPU_MAX_WORK
    assert request_work(GenerationRequest("x", steps=50), "sd1") == CPU_MAX_WORK
    big = GenerationRequest("x", steps=1, width=2048, height=2048)
    assert request_work(big, "sd1") == 4 * (4 * 1024 * 1024)  # 4 MP counted 4x: quadratic


@pytest.mark.parametrize(
    "body",
    [
        {"width": 2048, "height": 2048, "steps": 150, "n": 8},
        {"width": 2048, "height": 2048, "steps": 1},
        {"width": 1024, "height": 1024, "steps": 50},
    ],
)
def test_work_over_the_default_cpu_bound_is_422(server_client, body) -> None:
    res = server_client.post("/v1/generate", json={"prompt": "x", **body})
    assert "--max-work" in error_of(res, 422, "too_much_work")


def test_max_work_is_configurable(server_engine, registered_examples, tmp_path) -> None:
    small = 2 * 64 * 64
    app = create_app(
        engine=server_engine, static_dir=tmp_path, allowed_hosts=TEST_HOSTS, max_work=small
    )
    with TestClient(app) as c:
        assert c.post("/v1/generate", json={"prompt": "x", **SMALL}).status_code == 200
        error_of(c.post("/v1/generate", json={"prompt": "x", "n": 2, **SMALL}), 422)
        preview = c.post("/v1/adapters/example-style/preview", json={"steps": 3, "width": 64})
        error_of(preview, 422, "too_much_work")


def test_queued_request_of_a_gone_client_never_runs(server_engine) -> None:
    """The worker holds request 1 (engine lock taken here); request 2's client leaves: dropped."""
    from lorahub.inference import GenerationRequest
    from lorahub.server.worker import EngineWorker

    worker = EngineWorker(server_engine, max_queue=4)
    gen = GenerationRequest("x", steps=1, width=32, height=32)
    before = server_engine.metrics.counters["requests"]

    async def gone() -> bool:
        return True

    with server_engine._lock:
        first = worker.submit(gen)
        with pytest.raises(ClientGoneError):
            asyncio.run(worker.generate(gen, gone))
        with pytest.raises(ClientGoneError):  # gone before it was queued: never submitted
            asyncio.run(worker.generate(gen, gone))
    first.result(timeout=120)
    assert server_engine.metrics.counters["requests"] == before + 1 and worker.depth() == 0


def test_the_worker_is_the_one_admission_bound(lorahub_home, tmp_path) -> None:
    """The app builds its engine without a queue bound of its own: the worker's limit (waiting
    plus the batch that runs) is the only one, and the one /v1/status reports."""
    app = create_app(base="tiny", device="cpu", max_queue=3, max_batch=4, batch_window_ms=10,
                     static_dir=tmp_path, allowed_hosts=TEST_HOSTS)  # fmt: skip
    worker = app.state.lorahub.worker
    try:
        assert worker.engine.config.max_queue is None and worker.engine._queue.maxsize == 0
        assert worker.capacity == 3 + 4
        with TestClient(app) as client:
            queue = client.get("/v1/status").json()["queue"]
        assert queue == {"depth": 0, "limit": 7, "max_waiting": 3}
    finally:
        worker.engine.close()


# item 9: Host header


def test_foreign_host_is_421(server_client) -> None:
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.nip.io"):
        res = server_client.get("/v1/adapters", headers={"Host": host})
        assert "--allowed-host" in error_of(res, 421, "misdirected_request")
    for host in ("localhost", "LOCALHOST:8765", "127.0.0.1:8765", "[::1]:8765", "testserver"):
        assert server_client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_production_defaults_refuse_the_test_host(server_engine, tmp_path) -> None:
    app = create_app(engine=server_engine, static_dir=tmp_path, bind_host="lan-box")
    with TestClient(app) as c:
        error_of(c.get("/healthz"), 421)  # TestClient's "testserver" is not a default
        assert c.get("/healthz", headers={"Host": "lan-box:8765"}).status_code == 200


def test_allowed_host_set() -> None:
    assert allowed_hosts("0.0.0.0") == allowed_hosts() == {"localhost", "127.0.0.1", "::1"}
    assert host_allowed("box.lan", allowed_hosts(extra=["Box.LAN"]))
    assert host_allowed("anything", allowed_hosts(extra=["*"]))
    assert host_allowed("127.0.0.2:80", allowed_hosts()) and host_allowed(None, allowed_hosts())
    assert not host_allowed("10.0.0.1", allowed_hosts())


# item 10: names and tags


@pytest.mark.parametrize("tag", ["a\x00b", "bell\x07", "line\n", "del\x7f"])
def test_control_characters_in_tags_are_400(server_client, tag) -> None:
    res = server_client.post("/v1/adapters/example-style/tags", json={"tags": [tag]})
    assert "control characters" in error_of(res, 400, "invalid_input")
    data = server_client.get("/v1/adapters/example-style").json()
    assert tag not in (data.get("adapter", data).get("tags") or [])


def test_long_names_and_hash_names_refused(example_adapters, lorahub_home, tmp_path) -> None:
    from lorahub.cli import main
    from lorahub.errors import AlreadyExistsError
    from lorahub.registry import Registry

    style = example_adapters["example-style"]
    runner = CliRunner()
    res = runner.invoke(main, ["add", str(style), "--name", "n" * 300, "--copy"])
    assert res.exit_code == 1 and "at most 128" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(main, ["tag", "x", "bad\x01tag"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    with Registry() as reg:
        first = reg.add_adapter(style, name="first")
        with pytest.raises(AlreadyExistsError, match="hash prefix of adapter 'first'"):
            reg.add_adapter(example_adapters["example-light"], name=first.autov3)
        # an older registry may hold such a name: then the reference is ambiguous, not the name
        other = reg.add_adapter(example_adapters["example-light"], name="other")
        reg.db.execute("UPDATE adapters SET name = ? WHERE id = ?", [first.autov3, other.id])
        with pytest.raises(InvalidInputError, match="ambiguous"):
            reg.get_adapter(first.autov3)
