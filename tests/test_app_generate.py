"""One request through `lorahub generate` and through `POST /v1/generate` runs the same use case
(`lorahub.app.generate`) and records the same thing: equal resolved requests, equal PNG bytes."""

from __future__ import annotations

import base64
import dataclasses
import json

from click.testing import CliRunner

from tests.server_fixtures import SMALL, error_of

PROMPT = "a red circle on a blue background <lora:example-light:0.5>"


def spy_use_case(monkeypatch) -> tuple[list, list, list]:
    """Wrap the app's resolve and record functions: the orders they got, the requests they
    resolved, the images they recorded."""
    from lorahub.app import generate as use_case

    orders: list = []
    resolved: list = []
    recorded: list = []
    resolve, record = use_case.resolve_generation, use_case.record_result

    def resolve_spy(registry, order, *args, **kwargs):
        orders.append(order)
        resolved.append(resolve(registry, order, *args, **kwargs))
        return resolved[-1]

    def record_spy(*args, **kwargs):
        recorded.append(record(*args, **kwargs))
        return recorded[-1]

    monkeypatch.setattr(use_case, "resolve_generation", resolve_spy)
    monkeypatch.setattr(use_case, "record_result", record_spy)
    return orders, resolved, recorded


def cli_generate(*args: str):
    from lorahub.cli import main

    return CliRunner().invoke(main, ["generate", *args], catch_exceptions=False)


def test_cli_and_http_resolve_and_record_one_request_the_same_way(
    server_client, tmp_path, monkeypatch
):
    orders, resolved, recorded = spy_use_case(monkeypatch)
    out = tmp_path / "cli.png"
    size = f"{SMALL['width']}x{SMALL['height']}"
    cli = cli_generate(
        PROMPT,
        *("-a", "example-style:0.7", "--steps", str(SMALL["steps"]), "--size", size),
        *("--seed", "3", "--device", "cpu", "--dtype", "fp32", "-o", str(out), "--json"),
    )
    assert cli.exit_code == 0, cli.output
    body = {"prompt": PROMPT, "adapters": [{"name": "example-style", "weight": 0.7}], "seed": 3}
    http = server_client.post("/v1/generate", json={**body, **SMALL})
    assert http.status_code == 200, http.text

    assert len(orders) == len(resolved) == len(recorded) == 2  # each door called it once
    assert orders[0].prompt == orders[1].prompt == PROMPT
    cli_request, http_request = resolved
    assert [(a.name, a.weight) for a in http_request.adapters] == [
        ("example-style", 0.7),
        ("example-light", 0.5),
    ]
    assert http_request.prompt == "a red circle on a blue background"
    # the CLI names its base; the server's engine has one (the same tiny base)
    assert cli_request.base == "tiny" and http_request.base is None
    assert dataclasses.replace(cli_request, base=None) == http_request

    records = [json.loads(cli.output)["record"], http.json()["record"]]
    assert records == [recorded[0].record, recorded[1].record]
    assert all(r.pop("timings")["generate_s"] > 0 for r in records)  # measured, so never equal
    assert records[0] == records[1] and records[0]["seed"] == 3
    http_png = base64.b64decode(http.json()["images"][0])
    assert out.read_bytes() == recorded[0].pngs[0] == recorded[1].pngs[0] == http_png


def test_cli_and_http_refuse_an_unknown_adapter_with_one_message(
    server_client, tmp_path, monkeypatch
):
    orders, resolved, recorded = spy_use_case(monkeypatch)
    out = tmp_path / "never.png"
    cli = cli_generate("x <lora:nowhere>", "--steps", "1", "-o", str(out))
    http = server_client.post("/v1/generate", json={"prompt": "x <lora:nowhere>", **SMALL})
    message = error_of(http, 404, "not_found")
    assert "nowhere" in message and cli.exit_code == 1 and message in cli.output
    assert [o.prompt for o in orders] == ["x <lora:nowhere>"] * 2  # both asked the use case
    assert resolved == [] and recorded == [] and not out.exists()
