"""The HTTP API in process (TestClient / httpx ASGI): every 4xx path, auth, 429, OpenAPI, metrics,
tags, mixes and previews against a real registry and the real engine on the tiny base."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
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


@pytest.fixture(scope="module")
def engine(tiny_sd1):
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
def registered(example_adapters, lorahub_home) -> dict[str, Path]:
    """The example adapters registered in this test's registry, tagged `demo`, with trigger words."""
    from lorahub.examples import DEMO_ADAPTERS

    words = {spec.name: list(spec.trigger_words) for spec in DEMO_ADAPTERS}
    with Registry() as reg:
        for name, path in example_adapters.items():
            reg.add_adapter(path, name=name, tags=["demo"], trigger_words=words[name])
    return example_adapters


@pytest.fixture
def client(engine, registered, tmp_path):
    """A client of an app on this test's registry, with no web page folder."""
    app = create_app(engine=engine, static_dir=tmp_path / "no-page")
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


# generation


def test_generate_json_and_png(client) -> None:
    body = {
        "prompt": "a castle",
        "adapters": [{"name": "example-style", "weight": 0.8}],
        "seed": 7,
        **SMALL,
    }
    res = client.post("/v1/generate", json=body)
    assert res.status_code == 200, res.text
    data = res.json()
    assert set(data) == {"images", "record"} and len(data["images"]) == 1
    record = data["record"]
    assert (record["seed"], record["steps"], record["width"], record["base_family"]) == (
        7,
        2,
        64,
        "tiny-sd1",
    )
    assert [(a["name"], a["weight"]) for a in record["adapters"]] == [("example-style", 0.8)]
    png = client.post("/v1/generate", json=body, headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert "Lora hashes" in image.text["parameters"] and image.text["seed"] == "7"
    assert np.array_equal(np.asarray(image), np.asarray(decode(data["images"][0])))


def test_generate_mix_tags_and_n(client) -> None:
    plain = client.post("/v1/generate", json={"prompt": "a castle", "seed": 1, **SMALL}).json()
    tagged = client.post(
        "/v1/generate",
        json={"prompt": "a castle <lora:example-light:0.7>", "seed": 1, "n": 2, **SMALL},
    ).json()
    assert len(tagged["images"]) == 2 and tagged["record"]["seeds"] == [1, 2]
    assert tagged["record"]["prompt"] == "a castle"
    assert [a["name"] for a in tagged["record"]["adapters"]] == ["example-light"]
    a, b = (np.asarray(decode(x["images"][0]), dtype=float) for x in (plain, tagged))
    assert np.abs(a - b).mean() > 0.1  # the adapter changes the image
    client.post(
        "/v1/mixes", json={"name": "duo", "members": [{"ref": "example-style", "weight": 0.5}]}
    )
    mixed = client.post("/v1/generate", json={"prompt": "x", "mix": "duo", **SMALL})
    assert [(a["name"], a["weight"]) for a in mixed.json()["record"]["adapters"]] == [
        ("example-style", 0.5)
    ]


def test_unknown_adapters_and_mix_404_name_them_all(client) -> None:
    body = {
        "prompt": "x",
        "adapters": [{"name": "nope-a"}, {"name": "example-style"}, {"name": "nope-b"}],
    }
    message = error_of(
        client.post("/v1/generate", json={**body, "mix": "no-mix"}), 404, "not_found"
    )
    assert (
        all(n in message for n in ("nope-a", "nope-b", "no-mix")) and "example-style" not in message
    )
    message = error_of(client.post("/v1/generate", json={"prompt": "x <lora:ghost:1>"}), 404)
    assert "ghost" in message


def test_wrong_family_is_422(client, tmp_path) -> None:
    with Registry() as reg:
        reg.add_adapter(write_sd1_lora(tmp_path / "real-sd1.safetensors"), name="real-sd1")
    res = client.post("/v1/generate", json={"prompt": "x", "adapters": [{"name": "real-sd1"}]})
    message = error_of(res, 422, "incompatible")
    assert "real-sd1" in message and "sd1" in message and "tiny-sd1" in message


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"prompt": "x", "steps": 151}, 422, "steps"),
        ({"prompt": "x", "steps": 0}, 422, "steps"),
        ({"prompt": "x", "width": 65}, 422, "multiple of 8"),
        ({"prompt": "x", "height": 4096}, 422, "height"),
        ({"prompt": "x", "n": 9}, 422, "n"),
        ({"prompt": "x" * 2001}, 422, "prompt"),
        ({"prompt": "x", "negative": "typo"}, 422, "negative"),
        ({"prompt": "x", "seed": -1}, 422, "seed"),
        ({"prompt": "x", "guidance": "high"}, 422, "guidance"),
        ({"prompt": "x", "adapters": [{"name": "a", "weight": 1e9}]}, 422, "weight"),
        ({"prompt": "x", "adapters": [{"weight": 1}]}, 422, "name"),
        ({"steps": 2}, 422, "prompt"),
        ({"prompt": "x", "adapters": [{"name": "../etc"}]}, 400, "invalid name"),
        ({"prompt": "x <lora:example-style:heavy>"}, 400, "invalid weight"),
        (
            {"prompt": "x", "adapters": [{"name": "example-style"}, {"name": "example-style"}]},
            400,
            "example-style",
        ),
    ],
)
def test_malformed_generate_requests(client, body, status, needle) -> None:
    message = error_of(client.post("/v1/generate", json=body), status)
    assert needle in message


def test_bad_json_oversize_and_unknown_routes(client) -> None:
    headers = {"content-type": "application/json"}
    assert "not valid JSON" in error_of(
        client.post("/v1/generate", content=b"{bad", headers=headers), 422
    )
    error_of(
        client.post(
            "/v1/generate", content=b'{"prompt": "' + b"x" * 1_100_000 + b'"}', headers=headers
        ),
        413,
        "too_large",
    )
    chunks = iter([b'{"prompt": "', b"x" * 600_000, b"x" * 600_000, b'"}'])  # no Content-Length
    error_of(client.post("/v1/generate", content=chunks, headers=headers), 413, "too_large")
    error_of(client.get("/v1/nothing-here"), 404, "not_found")
    error_of(client.put("/v1/generate", json={}), 405, "method_not_allowed")
    error_of(client.get("/v1/adapters", params={"min_rank": "four"}), 422, "invalid_input")
    error_of(client.get("/v1/adapters", params={"sort": "mtime"}), 422)


# registry routes


def test_list_filters_and_detail(client) -> None:
    names = lambda res: sorted(a["name"] for a in res.json()["adapters"])  # noqa: E731
    assert names(client.get("/v1/adapters")) == ["example-light", "example-style"]
    assert names(client.get("/v1/adapters", params={"min_rank": 8})) == ["example-light"]
    assert names(client.get("/v1/adapters", params={"max_rank": 4, "base": "tiny-sd1"})) == [
        "example-style"
    ]
    assert names(client.get("/v1/adapters", params={"base": "sdxl"})) == []
    assert names(client.get("/v1/adapters", params={"format": "diffusers", "tag": "demo"})) == [
        "example-light",
        "example-style",
    ]
    assert names(client.get("/v1/adapters", params={"q": "light"})) == ["example-light"]
    detail = client.get("/v1/adapters/example-style").json()
    assert set(detail) >= {"adapter", "lineage", "publications", "mixes"}
    with Registry() as reg:
        assert detail["adapter"] == {**reg.get_adapter("example-style").to_json()}
    by_hash = client.get(f"/v1/adapters/{detail['adapter']['autov2']}")
    assert by_hash.json()["adapter"]["name"] == "example-style"
    error_of(client.get("/v1/adapters/missing"), 404, "not_found")


def test_tags_round_trip(client) -> None:
    res = client.post("/v1/adapters/example-style/tags", json={"tags": ["anime", "fav"]})
    assert set(res.json()["adapter"]["tags"]) == {"anime", "demo", "fav"}
    with Registry() as reg:
        assert [r.name for r in reg.list_adapters(tags=["anime"])] == ["example-style"]
    listed = client.get("/v1/adapters", params=[("tag", "anime"), ("tag", "fav")]).json()[
        "adapters"
    ]
    assert [a["name"] for a in listed] == ["example-style"]
    res = client.request("DELETE", "/v1/adapters/example-style/tags", json={"tags": ["anime"]})
    assert set(res.json()["adapter"]["tags"]) == {"demo", "fav"}
    error_of(
        client.post("/v1/adapters/example-style/tags", json={"tags": ["has space"]}),
        400,
        "invalid_input",
    )
    error_of(client.post("/v1/adapters/example-style/tags", json={"tags": []}), 422)
    error_of(client.post("/v1/adapters/ghost/tags", json={"tags": ["x"]}), 404)


def test_mixes_round_trip(client) -> None:
    body = {
        "name": "combo",
        "description": "two",
        "members": [
            {"ref": "example-style", "weight": 0.6},
            {"ref": "example-light", "weight": 9, "te_weight": 0.2},
        ],
    }
    res = client.post("/v1/mixes", json=body)
    assert res.status_code == 201 and res.headers["location"] == "/v1/mixes/combo"
    assert res.json()["warnings"] and "example-light" in res.json()["warnings"][0]
    with Registry() as reg:
        stored = reg.get_mix("combo")
    assert [(m.ref, m.weight, m.te_weight) for m in stored.members] == [
        ("example-style", 0.6, None),
        ("example-light", 9.0, 0.2),
    ]
    assert [m["name"] for m in client.get("/v1/mixes").json()["mixes"]] == ["combo"]
    assert client.get("/v1/mixes/combo").json()["mix"]["description"] == "two"
    assert client.get("/v1/adapters/example-style").json()["mixes"] == ["combo"]
    error_of(client.post("/v1/mixes", json=body), 409, "already_exists")
    assert (
        client.post(
            "/v1/mixes", json={**body, "force": True, "members": body["members"][:1]}
        ).status_code
        == 201
    )
    error_of(client.post("/v1/mixes", json={**body, "name": "bad name"}), 400, "invalid_input")
    error_of(client.post("/v1/mixes", json={**body, "name": "example-style"}), 409)
    error_of(
        client.post("/v1/mixes", json={**body, "name": "m2", "members": [{"ref": "ghost"}]}), 404
    )
    error_of(client.post("/v1/mixes", json={**body, "name": "m3", "members": []}), 422)
    assert client.delete("/v1/mixes/combo").json() == {"removed": "combo"}
    error_of(client.get("/v1/mixes/combo"), 404)
    error_of(client.delete("/v1/mixes/combo"), 404)


def test_preview_generate_store_and_serve(client) -> None:
    error_of(client.get("/v1/adapters/example-style/preview"), 404, "not_found")
    res = client.post(
        "/v1/adapters/example-style/preview", json={"steps": 2, "width": 64, "height": 64}
    )
    assert res.status_code == 200, res.text
    assert res.json()["record"]["prompt"] == "stylized" and res.json()["adapter"]["preview"]
    image = client.get("/v1/adapters/example-style/preview")
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    assert client.get("/v1/adapters/example-style").json()["preview_url"].endswith("/preview")


# status, metrics, openapi


def test_status_metrics_and_openapi(client) -> None:
    client.post(
        "/v1/generate", json={"prompt": "a tree", "adapters": [{"name": "example-light"}], **SMALL}
    )
    client.get("/v1/adapters/missing")
    status = client.get("/v1/status").json()
    assert (
        status["base"] == "tiny" and status["base_family"] == "tiny-sd1" and status["engine_loaded"]
    )
    assert "example-light" in [a["name"] for a in status["resident_adapters"]]
    assert status["queue"] == {"depth": 0, "limit": 33, "max_waiting": 32}
    assert (
        status["recent"][0]["prompt"] == "a tree"
        and status["recent"][0]["adapters"][0]["name"] == "example-light"
    )
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    samples = parse_prometheus(text.text)
    assert (
        samples[
            (
                "lorahub_http_requests_total",
                (("method", "POST"), ("route", "/v1/generate"), ("status", "200")),
            )
        ]
        >= 1
    )
    assert (
        samples[
            (
                "lorahub_http_requests_total",
                (("method", "GET"), ("route", "/v1/adapters/{ref}"), ("status", "404")),
            )
        ]
        == 1
    )
    assert samples[("lorahub_queue_depth", ())] == 0
    assert samples[("lorahub_swaps_total", ())] >= 1
    assert samples[("lorahub_swap_duration_seconds_count", ())] >= 1
    assert samples[("lorahub_generation_duration_seconds_count", ())] >= 1
    assert samples[("lorahub_swap_duration_seconds_bucket", (("le", "+Inf"),))] >= 1
    assert ("lorahub_adapter_cache_misses_total", (("tier", "cpu"),)) in samples
    assert ("lorahub_adapter_cache_hits_total", (("tier", "resident"),)) in samples
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/generate",
        "/v1/adapters",
        "/v1/adapters/{ref}/tags",
        "/v1/mixes",
        "/v1/status",
        "/metrics",
        "/healthz",
    } <= set(spec["paths"])
    assert "GenerateBody" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


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


# auth


def test_token_guards_everything_but_healthz(engine, registered, tmp_path) -> None:
    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html").write_text("<!doctype html><title>lorahub</title>")
    app = create_app(engine=engine, token=TOKEN, static_dir=page)
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"ok": True}
        for method, path in [
            ("GET", "/v1/adapters"), ("GET", "/v1/adapters/example-style"), ("GET", "/v1/mixes"),
            ("GET", "/v1/status"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"),
            ("POST", "/v1/generate"), ("GET", "/v1/adapters/example-style/preview"),
        ]:  # fmt: skip
            res = c.request(method, path, json={"prompt": "x"})
            assert error_of(res, 401, "unauthorized") and res.headers[
                "www-authenticate"
            ].startswith("Bearer")
            assert TOKEN not in res.text
            error_of(c.request(method, path, headers={"Authorization": "Bearer wrong"}), 401)
            error_of(c.request(method, path, headers={"Authorization": f"Basic {TOKEN}"}), 401)
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/v1/adapters", headers=ok).json()["count"] == 2
        assert c.post("/v1/generate", json={"prompt": "x", **SMALL}, headers=ok).status_code == 200
        assert "lorahub" in c.get("/").text  # the page itself loads; it asks for the token
        samples = parse_prometheus(c.get("/metrics", headers=ok).text)
        assert (
            samples[
                (
                    "lorahub_http_requests_total",
                    (("method", "GET"), ("route", "/v1/adapters"), ("status", "401")),
                )
            ]
            == 3
        )


# the queue


class BlockedEngine:
    """An engine whose generations wait until released (to fill the queue deterministically)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def generate(self, request):
        from lorahub.inference import GenerationResult

        self.calls += 1
        assert self.release.wait(30)
        record = {"prompt": request.prompt, "seed": request.seed, "steps": request.steps, "guidance": 7.5,
                  "width": 8, "height": 8, "base": "blocked", "adapters": []}  # fmt: skip
        return GenerationResult([Image.new("RGB", (8, 8), (request.seed, 0, 0))], record)


def test_queue_overflow_is_429_with_retry_after(lorahub_home, tmp_path) -> None:
    engine = BlockedEngine()
    app = create_app(engine=engine, max_queue=1, static_dir=tmp_path)
    worker = app.state.lorahub.worker

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lorahub") as c:
            running = [
                asyncio.create_task(c.post("/v1/generate", json={"prompt": "x", "seed": s}))
                for s in (1, 2)
            ]
            while worker.depth() < 2:
                await asyncio.sleep(0.01)
            full = await c.post("/v1/generate", json={"prompt": "x", "seed": 3})
            error_of(full, 429, "queue_full")
            assert int(full.headers["retry-after"]) >= 1
            assert (await c.get("/v1/status")).json()["queue"]["depth"] == 2
            engine.release.set()
            done = await asyncio.gather(*running)
            assert [r.status_code for r in done] == [200, 200]
            assert [r.json()["record"]["seed"] for r in done] == [1, 2]
            assert (
                await c.post("/v1/generate", json={"prompt": "x", "seed": 4})
            ).status_code == 200
            assert worker.depth() == 0 and engine.calls == 3
            text = (await c.get("/metrics")).text
            assert (
                'lorahub_http_requests_total{method="POST",route="/v1/generate",status="429"} 1'
                in text
            )

    asyncio.run(scenario())
    worker.shutdown()


# the serve command


def test_serve_binds_loopback_and_warns_without_token(monkeypatch) -> None:
    import uvicorn
    from click.testing import CliRunner
    from lorahub.cli import main
    from lorahub.cli.serve_cmds import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "example.org"]))
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    runner = CliRunner()
    quiet = runner.invoke(main, ["serve"])
    assert quiet.exit_code == 0, quiet.output
    assert (calls[0]["host"], calls[0]["port"]) == (
        "127.0.0.1",
        8765,
    ) and "WITHOUT A TOKEN" not in quiet.output
    loud = runner.invoke(main, ["serve", "--host", "0.0.0.0", "--port", "9001", "--max-queue", "3"])
    assert "WITHOUT A TOKEN" in loud.output and calls[1]["port"] == 9001
    assert calls[1]["app"].state.lorahub.worker.max_queue == 3
    guarded = runner.invoke(main, ["serve", "--host", "0.0.0.0", "--token", TOKEN])
    assert "WITHOUT A TOKEN" not in guarded.output and TOKEN not in guarded.output
    assert calls[2]["app"].state.lorahub.token == TOKEN
