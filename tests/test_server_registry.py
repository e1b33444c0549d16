"""The registry routes in process: list filters, detail, tags, mixes, previews round-trip with the registry."""

from __future__ import annotations

import io

from PIL import Image

from lorahub.registry import Registry
from tests.server_fixtures import error_of

# registry routes


def test_list_filters_and_detail(server_client) -> None:
    names = lambda res: sorted(a["name"] for a in res.json()["adapters"])  # noqa: E731
    assert names(server_client.get("/v1/adapters")) == ["example-light", "example-style"]
    assert names(server_client.get("/v1/adapters", params={"min_rank": 8})) == ["example-light"]
    assert names(server_client.get("/v1/adapters", params={"max_rank": 4, "base": "tiny-sd1"})) == [
        "example-style"
    ]
    assert names(server_client.get("/v1/adapters", params={"base": "sdxl"})) == []
    assert names(
        server_client.get("/v1/adapters", params={"format": "diffusers", "tag": "demo"})
    ) == [
        "example-light",
        "example-style",
    ]
    assert names(server_client.get("/v1/adapters", params={"q": "light"})) == ["example-light"]
    detail = server_client.get("/v1/adapters/example-style").json()
    assert set(detail) >= {"adapter", "lineage", "publications", "mixes"}
    with Registry() as reg:
        assert detail["adapter"] == {**reg.get_adapter("example-style").to_json()}
    by_hash = server_client.get(f"/v1/adapters/{detail['adapter']['autov2']}")
    assert by_hash.json()["adapter"]["name"] == "example-style"
    error_of(server_client.get("/v1/adapters/missing"), 404, "not_found")


def test_tags_round_trip(server_client) -> None:
    res = server_client.post("/v1/adapters/example-style/tags", json={"tags": ["anime", "fav"]})
    assert set(res.json()["adapter"]["tags"]) == {"anime", "demo", "fav"}
    with Registry() as reg:
        assert [r.name for r in reg.list_adapters(tags=["anime"])] == ["example-style"]
    listed = server_client.get("/v1/adapters", params=[("tag", "anime"), ("tag", "fav")]).json()[
        "adapters"
    ]
    assert [a["name"] for a in listed] == ["example-style"]
    res = server_client.request(
        "DELETE", "/v1/adapters/example-style/tags", json={"tags": ["anime"]}
    )
    assert set(res.json()["adapter"]["tags"]) == {"demo", "fav"}
    error_of(
        server_client.post("/v1/adapters/example-style/tags", json={"tags": ["has space"]}),
        400,
        "invalid_input",
    )
    error_of(server_client.post("/v1/adapters/example-style/tags", json={"tags": []}), 422)
    error_of(server_client.post("/v1/adapters/ghost/tags", json={"tags": ["x"]}), 404)


def test_mixes_round_trip(server_client) -> None:
    body = {
        "name": "combo",
        "description": "two",
        "members": [
            {"ref": "example-style", "weight": 0.6},
            {"ref": "example-light", "weight": 9, "te_weight": 0.2},
        ],
    }
    res = server_client.post("/v1/mixes", json=body)
    assert res.status_code == 201 and res.headers["location"] == "/v1/mixes/combo"
    assert res.json()["warnings"] and "example-light" in res.json()["warnings"][0]
    with Registry() as reg:
        stored = reg.get_mix("combo")
    assert [(m.ref, m.weight, m.te_weight) for m in stored.members] == [
        ("example-style", 0.6, None),
        ("example-light", 9.0, 0.2),
    ]
    assert [m["name"] for m in server_client.get("/v1/mixes").json()["mixes"]] == ["combo"]
    assert server_client.get("/v1/mixes/combo").json()["mix"]["description"] == "two"
    assert server_client.get("/v1/adapters/example-style").json()["mixes"] == ["combo"]
    error_of(server_client.post("/v1/mixes", json=body), 409, "already_exists")
    assert (
        server_client.post(
            "/v1/mixes", json={**body, "force": True, "members": body["members"][:1]}
        ).status_code
        == 201
    )
    error_of(
        server_client.post("/v1/mixes", json={**body, "name": "bad name"}), 400, "invalid_input"
    )
    error_of(server_client.post("/v1/mixes", json={**body, "name": "example-style"}), 409)
    error_of(
        server_client.post("/v1/mixes", json={**body, "name": "m2", "members": [{"ref": "ghost"}]}),
        404,
    )
    error_of(server_client.post("/v1/mixes", json={**body, "name": "m3", "members": []}), 422)
    assert server_client.delete("/v1/mixes/combo").json() == {"removed": "combo"}
    error_of(server_client.get("/v1/mixes/combo"), 404)
    error_of(server_client.delete("/v1/mixes/combo"), 404)


def test_preview_generate_store_and_serve(server_client) -> None:
    error_of(server_client.get("/v1/adapters/example-style/preview"), 404, "not_found")
    res = server_client.post(
        "/v1/adapters/example-style/preview", json={"steps": 2, "width": 64, "height": 64}
    )
    assert res.status_code == 200, res.text
    assert res.json()["record"]["prompt"] == "monochrome" and res.json()["adapter"]["preview"]
    image = server_client.get("/v1/adapters/example-style/preview")
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    assert (
        server_client.get("/v1/adapters/example-style").json()["preview_url"].endswith("/preview")
    )


def test_list_pages_with_totals_and_facets(server_client) -> None:
    first = server_client.get("/v1/adapters", params={"limit": 1}).json()
    second = server_client.get("/v1/adapters", params={"limit": 1, "offset": 1}).json()
    assert (first["count"], first["total"], first["all"], first["offset"]) == (1, 2, 2, 0)
    names = [page["adapters"][0]["name"] for page in (first, second)]
    assert names == ["example-light", "example-style"]
    past = server_client.get("/v1/adapters", params={"limit": 5, "offset": 2}).json()
    assert (past["adapters"], past["total"]) == ([], 2)
    filtered = server_client.get("/v1/adapters", params={"limit": 1, "q": "light"}).json()
    assert (filtered["total"], filtered["all"]) == (1, 2)
    facets = server_client.get("/v1/adapters/facets").json()
    assert facets == {"tags": ["demo"], "bases": ["tiny-sd1"]}
    error_of(server_client.get("/v1/adapters", params={"offset": -1}), 422)
