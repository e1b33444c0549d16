"""The HTTP API of example images and of mixes made from an uploaded image: shapes, auth, bounds."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lorahub.registry import Registry
from lorahub.server import create_app
from tests.server_fixtures import TEST_HOSTS, TOKEN, error_of

STYLE = "example-style"


def a1111_png(path: Path, style_hash: str, size: int = 16, noise: bool = False) -> Path:
    """A PNG as A1111 writes it: LoRA tags in the prompt, their hashes under `Lora hashes`."""
    text = (
        "a red circle <lora:my_style_v2:0.7> <lora:not-here:0.5>\nNegative prompt: blurry\n"
        "Steps: 12, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 1234, Size: 64x64, "
        f'Lora hashes: "my_style_v2: {style_hash}, not-here: 0123456789ab", Version: v1.10.1'
    )
    info = PngInfo()
    info.add_text("parameters", text)
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels) if noise else Image.new("RGB", (size, size), (200, 40, 40))
    image.save(path, pnginfo=info)
    return path


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 40,000 x 40,000 pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def add_examples(tmp_path: Path, count: int = 3) -> list[Path]:
    with Registry() as reg:
        autov3 = reg.get_adapter(STYLE).autov3
        files = [a1111_png(tmp_path / f"ex{i}.png", autov3, size=16 + 8 * i) for i in range(count)]
        reg.add_images(STYLE, files)
    return files


def test_example_images_are_listed_and_served(server_client, tmp_path) -> None:
    files = add_examples(tmp_path)
    data = server_client.get(f"/v1/adapters/{STYLE}").json()
    images = data["images"]
    assert [i["position"] for i in images] == [0, 1, 2]
    assert images[0]["url"] == f"/v1/adapters/{STYLE}/images/0" and images[0]["tool"] == "a1111"
    assert (
        images[1]["params"]["prompt"].startswith("a red circle")
        and images[1]["params"]["seed"] == 1234
    )
    assert server_client.get(f"/v1/adapters/{STYLE}/images").json() == {
        "images": images,
        "count": 3,
    }
    res = server_client.get(images[2]["url"])
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.content == files[2].read_bytes()
    thumb = server_client.get(images[2]["url"], params={"size": 16})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (16, 16)
    page = server_client.get("/v1/adapters", params={"limit": 10}).json()
    assert set(page["images"]) == {STYLE} and page["images"][STYLE]["count"] == 3
    assert [i["url"] for i in page["images"][STYLE]["items"]] == [i["url"] for i in images]
    assert data["adapter"]["preview"] == images[0]["file"]  # the first image is the preview


def test_image_routes_refuse_what_is_not_there(server_client, tmp_path) -> None:
    add_examples(tmp_path, 1)
    error_of(server_client.get(f"/v1/adapters/{STYLE}/images/7"), 404, "not_found")
    error_of(server_client.get("/v1/adapters/ghost/images/0"), 404, "not_found")
    error_of(server_client.get(f"/v1/adapters/{STYLE}/images/zero"), 422, "invalid_input")
    error_of(server_client.get(f"/v1/adapters/{STYLE}/images/0", params={"size": 5000}), 422)
    with Registry() as reg:  # a row naming a file outside the previews folder is never served
        reg.db.conn.execute("UPDATE adapter_images SET file = '../registry.db'")
        reg.db.conn.commit()
    assert "previews folder" in error_of(server_client.get(f"/v1/adapters/{STYLE}/images/0"), 404)


def upload(client: TestClient, data: bytes, ctype: str = "image/png", **params: object):
    return client.post(
        "/v1/mixes/from-image", content=data, headers={"Content-Type": ctype}, params=params
    )


def test_uploaded_image_becomes_the_mix_the_cli_makes(server_client, tmp_path) -> None:
    with Registry() as reg:
        png = a1111_png(tmp_path / "castle.png", reg.get_adapter(STYLE).autov3)
    data = png.read_bytes()
    refused = upload(server_client, data, name="from-web", filename="castle.png")
    assert "not-here (0123456789ab)" in error_of(refused, 404, "not_found")
    assert server_client.get("/v1/mixes").json()["count"] == 0  # nothing saved
    dry = upload(server_client, data, dry_run="true")
    assert dry.status_code == 200 and dry.json()["mix"] is None
    assert [(m["adapter"], m["by"]) for m in dry.json()["found"]] == [(STYLE, "hash")]
    assert dry.json()["missing"] == [{"name": "not-here", "hash": "0123456789ab"}]
    made = upload(server_client, data, name="from-web", allow_missing="true", filename="castle.png")
    assert made.status_code == 201 and made.headers["location"] == "/v1/mixes/from-web"
    mix = made.json()["mix"]
    assert made.json()["image"] == "castle.png"
    from lorahub.cli import main

    cli = CliRunner().invoke(
        main, ["mix", "from-image", str(png), "--name", "from-cli", "--allow-missing", "--json"]
    )
    assert cli.exit_code == 0, cli.output
    same = json.loads(cli.stdout)["mix"]
    for key in ("members", "defaults", "description", "base_family"):
        assert mix[key] == same[key], key
    assert mix["defaults"]["seed"] == 1234 and mix["members"][0]["weight"] == 0.7
    error_of(upload(server_client, data, name="from-web", allow_missing="true"), 409)
    assert (
        upload(server_client, data, name="from-web", allow_missing="true", force="true").status_code
        == 201
    )


def test_upload_bounds_and_types(server_client, server_engine, tmp_path) -> None:
    with Registry() as reg:
        big = a1111_png(tmp_path / "big.png", reg.get_adapter(STYLE).autov3, size=700, noise=True)
    assert big.stat().st_size > 1_000_000  # over the JSON limit, under the image limit
    assert (
        upload(server_client, big.read_bytes(), name="big", allow_missing="true").status_code == 201
    )
    for ctype in ("text/plain", "application/json", "multipart/form-data"):
        error_of(upload(server_client, b"hello", ctype, name="x"), 415, "unsupported_media_type")
    assert "not a readable image" in error_of(
        upload(server_client, b"hello", name="x"), 422, "bad_file"
    )
    error_of(upload(server_client, bomb_png(), name="x"), 422, "bad_file")
    error_of(upload(server_client, b"", name="x"), 400, "invalid_input")
    plain = io.BytesIO()
    Image.new("RGB", (8, 8)).save(plain, "PNG")
    assert "no generation parameters" in error_of(
        upload(server_client, plain.getvalue(), name="x"), 400
    )
    error_of(upload(server_client, big.read_bytes()), 400, "invalid_input")  # a name is needed
    error_of(upload(server_client, big.read_bytes(), name="../x"), 400, "invalid_input")
    small = create_app(
        engine=server_engine,
        static_dir=tmp_path / "none",
        allowed_hosts=TEST_HOSTS,
        max_image_bytes=10_000,
    )
    with TestClient(small) as c:
        assert "over 10000 bytes" in error_of(
            upload(c, big.read_bytes(), name="x"), 413, "too_large"
        )
        chunks = iter([b"\x89PNG" + b"x" * 6000, b"x" * 6000])  # no Content-Length
        error_of(
            c.post(
                "/v1/mixes/from-image?name=x", content=chunks, headers={"Content-Type": "image/png"}
            ),
            413,
            "too_large",
        )


def test_image_routes_need_the_token(server_engine, registered_examples, tmp_path) -> None:
    add_examples(tmp_path, 1)
    app = create_app(
        engine=server_engine, token=TOKEN, static_dir=tmp_path / "none", allowed_hosts=TEST_HOSTS
    )
    ok = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as c:
        for method, path in [
            ("GET", f"/v1/adapters/{STYLE}/images"),
            ("GET", f"/v1/adapters/{STYLE}/images/0"),
            ("POST", "/v1/mixes/from-image?name=x"),
        ]:
            error_of(
                c.request(method, path, content=b"\x89PNG", headers={"Content-Type": "image/png"}),
                401,
            )
        assert c.get(f"/v1/adapters/{STYLE}/images/0", headers=ok).status_code == 200
    spec = (
        TestClient(create_app(engine=server_engine, allowed_hosts=TEST_HOSTS))
        .get("/openapi.json")
        .json()
    )
    assert {
        "/v1/adapters/{ref}/images",
        "/v1/adapters/{ref}/images/{position}",
        "/v1/mixes/from-image",
    } <= set(spec["paths"])
    body = spec["paths"]["/v1/mixes/from-image"]["post"]["requestBody"]["content"]
    assert set(body) == {"image/png", "image/jpeg", "image/webp"}
