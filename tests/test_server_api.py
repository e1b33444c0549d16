"""The HTTP API in process: generation (JSON and PNG), every 4xx path, status, metrics, OpenAPI."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lorahub.registry import Registry
from tests.server_fixtures import SMALL, decode, error_of, parse_prometheus, write_sd1_lora

# generation


def test_generate_json_and_png(server_client) -> None:
    body = {
        "prompt": "a castle",
        "adapters": [{"name": "example-style", "weight": 0.8}],
        "seed": 7,
        **SMALL,
    }
    res = server_client.post("/v1/generate", json=body)
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
    png = server_client.post("/v1/generate", json=body, headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert "Lora hashes" in image.text["parameters"] and image.text["seed"] == "7"
    assert np.array_equal(np.asarray(image), np.asarray(decode(data["images"][0])))


def test_generate_mix_tags_and_n(server_client) -> None:
    plain = server_client.post(
        "/v1/generate", json={"prompt": "a castle", "seed": 1, **SMALL}
    ).json()
    tagged = server_client.post(
        "/v1/generate",
        json={"prompt": "a castle <lora:example-light:0.7>", "seed": 1, "n": 2, **SMALL},
    ).json()
    assert len(tagged["images"]) == 2 and tagged["record"]["seeds"] == [1, 2]
    assert tagged["record"]["prompt"] == "a castle"
    assert [a["name"] for a in tagged["record"]["adapters"]] == ["example-light"]
    a, b = (np.asarray(decode(x["images"][0]), dtype=float) for x in (plain, tagged))
    assert np.abs(a - b).mean() > 0.1  # the adapter changes the image
    server_client.post(
        "/v1/mixes", json={"name": "duo", "members": [{"ref": "example-style", "weight": 0.5}]}
    )
    mixed = server_client.post("/v1/generate", json={"prompt": "x", "mix": "duo", **SMALL})
    assert [(a["name"], a["weight"]) for a in mixed.json()["record"]["adapters"]] == [
        ("example-style", 0.5)
    ]


def test_unknown_adapters_and_mix_404_name_them_all(server_client) -> None:
    body = {
        "prompt": "x",
        "adapters": [{"name": "nope-a"}, {"name": "example-style"}, {"name": "nope-b"}],
    }
    message = error_of(
        server_client.post("/v1/generate", json={**body, "mix": "no-mix"}), 404, "not_found"
    )
    assert (
        all(n in message for n in ("nope-a", "nope-b", "no-mix")) and "example-style" not in message
    )
    message = error_of(server_client.post("/v1/generate", json={"prompt": "x <lora:ghost:1>"}), 404)
    assert "ghost" in message


def test_wrong_family_is_422(server_client, tmp_path) -> None:
    with Registry() as reg:
        reg.add_adapter(write_sd1_lora(tmp_path / "real-sd1.safetensors"), name="real-sd1")
    res = server_client.post(
        "/v1/generate", json={"prompt": "x", "adapters": [{"name": "real-sd1"}]}
    )
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
        ({"prompt": "x", "scheduler": "bogus"}, 400, "unknown scheduler"),
        (
            {"prompt": "x", "adapters": [{"name": "example-style"}, {"name": "example-style"}]},
            400,
            "example-style",
        ),
    ],
)
def test_malformed_generate_requests(server_client, body, status, needle) -> None:
    message = error_of(server_client.post("/v1/generate", json=body), status)
    assert needle in message


def test_bad_json_oversize_and_unknown_routes(server_client) -> None:
    headers = {"content-type": "application/json"}
    assert "not valid JSON" in error_of(
        server_client.post("/v1/generate", content=b"{bad", headers=headers), 422
    )
    error_of(
        server_client.post(
            "/v1/generate", content=b'{"prompt": "' + b"x" * 1_100_000 + b'"}', headers=headers
        ),
        413,
        "too_large",
    )
    chunks = iter([b'{"prompt": "', b"x" * 600_000, b"x" * 600_000, b'"}'])  # no Content-Length
    error_of(server_client.post("/v1/generate", content=chunks, headers=headers), 413, "too_large")
    form = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
    assert "Content-Type: application/json" in error_of(
        server_client.post("/v1/generate", content=b'{"prompt": "x"}', headers=form),
        415,
        "unsupported_media_type",
    )
    assert "Input should be" in error_of(server_client.post("/v1/generate", json=[1]), 422)
    error_of(server_client.get("/v1/nothing-here"), 404, "not_found")
    error_of(server_client.put("/v1/generate", json={}), 405, "method_not_allowed")
    error_of(server_client.get("/v1/adapters", params={"min_rank": "four"}), 422, "invalid_input")
    error_of(server_client.get("/v1/adapters", params={"sort": "mtime"}), 422)


# status, metrics, openapi


def test_status_metrics_and_openapi(server_client) -> None:
    server_client.post(
        "/v1/generate", json={"prompt": "a tree", "adapters": [{"name": "example-light"}], **SMALL}
    )
    server_client.get("/v1/adapters/missing")
    status = server_client.get("/v1/status").json()
    assert (
        status["base"] == "tiny" and status["base_family"] == "tiny-sd1" and status["engine_loaded"]
    )
    assert "example-light" in [a["name"] for a in status["resident_adapters"]]
    assert status["queue"] == {"depth": 0, "limit": 33, "max_waiting": 32}
    assert (
        status["recent"][0]["prompt"] == "a tree"
        and status["recent"][0]["adapters"][0]["name"] == "example-light"
    )
    text = server_client.get("/metrics")
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
    spec = server_client.get("/openapi.json").json()
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
    assert server_client.get("/docs").status_code == 200


def test_http_status_comes_from_the_servers_one_table() -> None:
    from lorahub import errors
    from lorahub.app.work import WorkLimitError
    from lorahub.server.errors import STATUS, ClientGoneError, QueueFullError, http_status

    class Gone(errors.NotFoundError):  # a class not in the table takes its nearest parent's
        pass

    assert not hasattr(errors.LorahubError, "http_status")  # the library knows no HTTP
    assert [http_status(e("x")) for e in (errors.NotFoundError, Gone, errors.HubError)] == [
        404,
        404,
        502,
    ]
    assert (
        http_status(errors.LorahubError("x")) == 400
        and http_status(errors.StorageError("x")) == 507
    )
    assert http_status(WorkLimitError("x")) == 422 != http_status(errors.InvalidInputError("x"))
    assert (http_status(QueueFullError("x")), http_status(ClientGoneError("x"))) == (429, 499)
    assert all(issubclass(cls, errors.LorahubError) for cls in STATUS)
