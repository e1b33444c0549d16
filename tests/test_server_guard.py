"""Guards in process: the bearer token, the bounded queue (429 + Retry-After), and `lorahub serve`'s binding."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient
from PIL import Image

from lorahub.server import create_app
from tests.server_fixtures import SMALL, TEST_HOSTS, TOKEN, error_of, parse_prometheus

# auth


def test_token_guards_everything_but_healthz(server_engine, registered_examples, tmp_path) -> None:
    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html").write_text("<!doctype html><title>lorahub</title>")
    app = create_app(engine=server_engine, token=TOKEN, static_dir=page, allowed_hosts=TEST_HOSTS)
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
    """An engine whose generations wait until released (to fill the queue deterministically);
    it serves the server's engine interface (`ServedEngine`) with one worker thread of its own."""

    device = "cpu"
    batch_slots = 1

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocked-engine")

    def submit(self, request) -> Future:
        return self.pool.submit(self.generate, request)

    def warm_up(self) -> None:
        pass

    def stats(self) -> dict:
        return {}

    def status(self) -> dict:
        return {}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def generate(self, request):
        from lorahub.inference import GenerationResult

        self.calls += 1
        assert self.release.wait(30)
        record = {"prompt": request.prompt, "seed": request.seed, "steps": request.steps, "guidance": 7.5,
                  "width": 8, "height": 8, "base": "blocked", "adapters": []}  # fmt: skip
        return GenerationResult([Image.new("RGB", (8, 8), (request.seed, 0, 0))], record)


def test_queue_overflow_is_429_with_retry_after(lorahub_home, tmp_path) -> None:
    engine = BlockedEngine()
    app = create_app(engine=engine, max_queue=1, static_dir=tmp_path, allowed_hosts=["lorahub"])
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
    engine.close()


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


def test_serve_compile_plans_slots_from_the_registry(monkeypatch, registered_examples) -> None:
    import uvicorn
    from click.testing import CliRunner

    from lorahub.cli import main

    calls: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    runner = CliRunner()
    every = runner.invoke(main, ["serve", "--compile"])
    assert every.exit_code == 0, every.output
    config = calls[0].state.lorahub.worker.engine.config
    assert config.compile and config.slot_rank is None
    assert sorted(s.name for s in config.slot_adapters) == ["example-light", "example-style"]
    named = runner.invoke(
        main, ["serve", "--compile", "--slot-adapter", "example-style", "--slot-rank", "16"]
    )
    assert named.exit_code == 0, named.output
    config = calls[1].state.lorahub.worker.engine.config
    assert [s.name for s in config.slot_adapters] == ["example-style"] and config.slot_rank == 16
    wrong = runner.invoke(main, ["serve", "--compile", "--base", "tiny-sdxl"])
    assert wrong.exit_code != 0 and len(calls) == 2
    assert "none is a plain LoRA for tiny-sdxl" in wrong.output
    assert "Traceback" not in wrong.output and len(wrong.output.strip().splitlines()) == 1
