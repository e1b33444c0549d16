"""`lorahub serve --ray`: the serve app as a Ray Serve ingress, engine replicas with adapter affinity.

One local Ray instance for the module (2 logical CPUs, 2 CPU engine replicas of the tiny base,
2-step 64x64 images); Serve and Ray are shut down at the end. The tests without Ray (the
no-Ray message, the printed config) run everywhere.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lorahub.cli import main
from lorahub.registry import Registry
from tests.serve_process import free_port
from tests.server_fixtures import SMALL, TOKEN, decode, error_of, parse_prometheus

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY,
    reason='Ray Serve is an optional extra (pip install "lorahub[ray]"); CI installs it',
)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = "a red circle on a blue background"
SETS = (  # four adapter sets (each a different set of files)
    [{"name": "example-style"}],
    [{"name": "example-light", "weight": 0.8}],
    [{"name": "rand-a"}],
    [{"name": "example-style", "weight": 0.5}, {"name": "rand-b"}],
)


@pytest.fixture(scope="module")
def ray_home(example_adapters, tmp_path_factory):
    """A registry with the two example adapters and two seeded random ones (tiny-sd1)."""
    from lorahub.examples import ExampleAdapter, write_example_adapter

    home = tmp_path_factory.mktemp("ray-home")
    files = dict(example_adapters)
    for i, name in enumerate(("rand-a", "rand-b", "gone")):
        spec = ExampleAdapter(name, 4, 4.0, 40 + i)
        files[name] = write_example_adapter("tiny", home / f"{name}.safetensors", spec)
    with Registry(home / "registry.db") as reg:
        for name, path in files.items():
            reg.add_adapter(path, name=name)
    (home / "gone.safetensors").unlink()  # registered, then its file went away
    return home


@pytest.fixture(scope="module")
def ray_app(ray_home, tiny_sd1, one_thread):
    """Local Ray, Serve's proxy on a free port, the lorahub application; (url, settings)."""
    import ray
    from ray import serve

    from lorahub.paths import lorahub_cache
    from lorahub.server import ray_serve
    from lorahub.server.ray_config import RaySettings

    settings = RaySettings(
        registry_path=str(ray_home / "registry.db"), token=TOKEN, device="cpu", dtype="fp32",
        replicas=2, max_sets=4, max_set_adapters=2, max_queue=0, port=free_port(),
        adapters_from="auto",
        env={"LORAHUB_CACHE": str(lorahub_cache()), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray_serve.deploy(settings), settings
    finally:
        serve.shutdown()
        ray.shutdown()


def post(url: str, adapters: list, seed: int = 3, steps: int = 2, **kw) -> httpx.Response:
    body = {"prompt": PROMPT, "adapters": adapters, **SMALL, "steps": steps, "seed": seed, **kw}
    return httpx.post(f"{url}/v1/generate", json=body, headers=AUTH, timeout=120)


def replica_figures(url: str) -> dict[str, dict[str, float]]:
    """Per-replica figures from /metrics: {replica: {set_hits: .., set_loads: .., ...}}."""
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=30).text
    out: dict[str, dict[str, float]] = {}
    for (name, labels), value in parse_prometheus(text).items():
        if name.startswith("lorahub_replica_"):
            key = name.removeprefix("lorahub_replica_").removesuffix("_total")
            out.setdefault(dict(labels)["replica"], {})[key] = value
    return out


@needs_ray
def test_a_cluster_address_that_does_not_answer_is_one_line():
    """First in the module: the CLI must find no Ray instance already started in this process."""
    t = time.monotonic()
    result = CliRunner().invoke(
        main, ["serve", "--ray", "--ray-address", f"127.0.0.1:{free_port()}"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: the Ray cluster at 127.0.0.1:")
    assert "does not answer" in result.output and len(result.output.strip().splitlines()) == 1
    assert time.monotonic() - t < 10


def test_an_adapter_set_id_is_its_files_not_its_weights_or_order():
    from lorahub.server.ray_engine import adapter_set_id
    from lorahub.types import AdapterSpec

    a = AdapterSpec(name="a", path="/a", key="ka", weight=1.0)
    b = AdapterSpec(name="b", path="/b", key="kb", weight=0.5)
    a_half = AdapterSpec(name="a", path="/a", key="ka", weight=0.5)
    assert adapter_set_id([a, b]) == adapter_set_id([b, a_half])
    assert adapter_set_id([a]) != adapter_set_id([a, b]) != adapter_set_id([b])
    assert adapter_set_id([]) == ""


def test_replica_figures_are_summed_and_labelled():
    from lorahub.metrics import ServerMetrics, render
    from lorahub.server.ray_engine import merge_stats

    one = {
        "set_hits": 3,
        "set_requests": 4,
        "requests": 4,
        "swap_seconds": {"buckets": [[0.1, 1], ["+Inf", 2]], "sum": 0.3, "count": 2},
    }
    two = {"set_hits": 1, "set_requests": 1, "requests": 1,
           "swap_seconds": {"buckets": [[0.1, 0], ["+Inf", 1]], "sum": 0.5, "count": 1}}  # fmt: skip
    merged = merge_stats([one, two])
    assert merged["set_hits"] == 4 and merged["swap_seconds"]["buckets"] == [[0.1, 1], ["+Inf", 3]]
    merged["replicas"] = {"r1": one, "r2": two}
    metrics = parse_prometheus(render(ServerMetrics(), 0, 4, merged))
    assert metrics[("lorahub_replica_set_hits_total", (("replica", "r1"),))] == 3
    assert metrics[("lorahub_replica_set_hits_total", (("replica", "r2"),))] == 1
    assert metrics[("lorahub_engine_set_hits_total", ())] == 4


def test_an_engine_holds_a_set_until_it_lets_go(server_engine, ray_home):
    from lorahub.types import MixMember

    with Registry(ray_home / "registry.db") as reg:
        specs = reg.resolve_members([MixMember(ref="rand-a"), MixMember(ref="rand-b")])
    assert not server_engine.holds(specs)
    keys = server_engine.hold(specs)
    again = server_engine.hold(specs[:1])  # a second set sharing rand-a
    assert server_engine.holds(specs)
    server_engine.let_go(keys)
    assert server_engine.holds(specs[:1]) and not server_engine.holds(specs[1:])
    server_engine.let_go(again)
    assert not server_engine.holds(specs[:1])


def test_a_late_eviction_does_not_forget_a_set_asked_for_again(server_engine, ray_home):
    """Ray's loader gets only the set id; an evicted copy's `__del__` may run after a new request
    for the same set stored its adapters, and must not make the loader lose them."""
    import asyncio

    from lorahub.server.ray_config import RaySettings
    from lorahub.server.ray_engine import adapter_set_id
    from lorahub.server.ray_replica import EngineReplica
    from lorahub.types import MixMember

    with Registry(ray_home / "registry.db") as reg:
        specs = tuple(reg.resolve_members([MixMember(ref="rand-b")]))
    replica = EngineReplica(RaySettings(), "r", engine=server_engine)
    set_id = adapter_set_id(specs)
    replica.remember(set_id, specs)
    old = asyncio.run(replica.load(set_id))
    replica.remember(set_id, specs)  # a new request for the set, while Ray evicts the old copy
    old.release()  # ... whose `__del__` runs only now
    new = asyncio.run(replica.load(set_id))
    assert server_engine.holds(list(specs))
    new.release()
    assert not server_engine.holds(list(specs))


@needs_ray
def test_a_request_through_ray_makes_the_same_image_as_plain_serve(
    ray_app, ray_home, server_engine
):
    from lorahub.server import create_app

    url, _ = ray_app
    adapters = [{"name": "example-light", "weight": 0.7}]
    through_ray = post(url, adapters, seed=11)
    assert through_ray.status_code == 200, through_ray.text
    app = create_app(
        registry_path=ray_home / "registry.db", engine=server_engine, allowed_hosts=("testserver",)
    )
    body = {"prompt": PROMPT, "adapters": adapters, **SMALL, "seed": 11}
    with TestClient(app) as client:
        plain = client.post("/v1/generate", json=body)
    assert plain.status_code == 200, plain.text
    ours, theirs = (np.asarray(decode(r.json()["images"][0])) for r in (through_ray, plain))
    assert ours.shape == (64, 64, 3)
    assert np.array_equal(ours, theirs)
    assert through_ray.json()["record"]["adapters"] == plain.json()["record"]["adapters"]


@needs_ray
def test_each_adapter_set_lands_on_one_replica(ray_app):
    url, _ = ray_app
    for adapters in SETS:  # warm-up: each set is loaded somewhere once
        assert post(url, adapters).status_code == 200
    time.sleep(0.5)  # the replicas report their sets to Ray's router every 0.1 s
    before = replica_figures(url)
    for i in range(24):
        response = post(url, SETS[i % 4], seed=i)
        assert response.status_code == 200, response.text
    after = replica_figures(url)
    requests = sum(
        after[r]["set_requests"] - before.get(r, {}).get("set_requests", 0) for r in after
    )
    hits = sum(after[r]["set_hits"] - before.get(r, {}).get("set_hits", 0) for r in after)
    loads = sum(f["set_loads"] for f in after.values())
    assert requests == 24
    assert hits / requests >= 0.9, after
    assert loads <= len(SETS) + 1, after  # round-robin would load each set on both replicas


@needs_ray
def test_token_healthz_errors_and_metrics_as_lorahub_serve(ray_app):
    url, _ = ray_app
    assert httpx.get(f"{url}/healthz").json() == {"ok": True}
    error_of(httpx.get(f"{url}/v1/adapters"), 401, "unauthorized")
    assert httpx.get(f"{url}/v1/adapters", headers=AUTH).status_code == 200
    message = error_of(post(url, [{"name": "nope"}, {"name": "nada"}]), 404, "not_found")
    assert "nope" in message and "nada" in message
    three = [{"name": "example-style"}, {"name": "rand-a"}, {"name": "rand-b"}]
    assert "at most 2" in error_of(post(url, three), 422, "too_many_adapters")
    error_of(post(url, [], steps=0), 422, "invalid_input")
    metrics = parse_prometheus(httpx.get(f"{url}/metrics", headers=AUTH).text)
    assert ("lorahub_queue_limit", ()) in metrics
    assert any(name == "lorahub_replica_set_loads_total" for name, _ in metrics)
    assert httpx.get(f"{url}/openapi.json", headers=AUTH).json()["info"]["title"] == "lorahub"


@needs_ray
def test_a_replica_that_cannot_find_a_file_names_it_and_stays_healthy(ray_app):
    url, _ = ray_app
    response = post(url, [{"name": "gone"}])
    assert 400 <= response.status_code < 600 and response.status_code != 500, response.text
    assert "gone.safetensors" in response.json()["error"]["message"]
    assert post(url, SETS[0]).status_code == 200


@needs_ray
def test_a_file_missing_here_comes_from_its_hub_publication(
    ray_app, ray_home, server_engine, hub, hub_repo_id
):
    """--adapters-from auto: the registered path is gone, the replica fetches repo@commit."""
    from lorahub.app.hub import push_adapter
    from lorahub.examples import ExampleAdapter, write_example_adapter
    from lorahub.server import create_app

    url, _ = ray_app
    spec = ExampleAdapter("pushed", 4, 4.0, 60)  # new bytes: no replica has ever held them
    path = write_example_adapter("tiny", ray_home / "pushed.safetensors", spec)
    with Registry(ray_home / "registry.db") as reg:
        reg.add_adapter(path, name="pushed")
        push_adapter("pushed", hub_repo_id, registry=reg)
    app = create_app(
        registry_path=ray_home / "registry.db", engine=server_engine, allowed_hosts=("testserver",)
    )
    body = {"prompt": PROMPT, "adapters": [{"name": "pushed"}], **SMALL, "seed": 9}
    with TestClient(app) as client:
        plain = client.post("/v1/generate", json=body)  # with the local file
    assert plain.status_code == 200, plain.text
    path.unlink()
    through_ray = post(url, [{"name": "pushed"}], seed=9)
    assert through_ray.status_code == 200, through_ray.text
    ours, theirs = (np.asarray(decode(r.json()["images"][0])) for r in (through_ray, plain))
    assert np.array_equal(ours, theirs)
    assert hub.calls("GET", f"/{hub_repo_id}/resolve/")  # the replica downloaded it


@needs_ray
def test_every_queue_full_is_429_with_retry_after(ray_app):
    url, settings = ray_app
    statuses: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda i=i: statuses.append(post(url, SETS[i % 2], steps=40)))
        for i in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in statuses)
    assert codes.count(200) >= settings.replicas - 1 and 429 in codes, codes
    full = next(r for r in statuses if r.status_code == 429)
    error_of(full, 429, "queue_full")
    assert int(full.headers["Retry-After"]) >= 1


@needs_ray
def test_killing_a_replica_mid_request_is_503_then_requests_succeed(ray_app):
    import ray

    url, _ = ray_app
    assert post(url, SETS[2]).status_code == 200
    holders = holders_of(url, "rand-a")
    assert holders
    result: list[httpx.Response] = []
    long = {"width": 128, "height": 128}  # ~seconds: still running when its replica is killed
    running = threading.Thread(target=lambda: result.append(post(url, SETS[2], steps=150, **long)))
    running.start()
    time.sleep(1.5)
    for holder in holders:  # normally one: the set's replica
        ray.kill(engine_actor(holder), no_restart=True)
    running.join()
    message = error_of(result[0], 503, "replica_unavailable")  # it ran on the killed replica
    assert "retry" in message
    later = retry_503(lambda: post(url, SETS[2], seed=5))
    assert later.status_code == 200, later.text
    assert [a["name"] for a in later.json()["record"]["adapters"]] == ["rand-a"]


def retry_503(send, seconds: float = 60.0) -> httpx.Response:
    """What a client does with 503: retry (Ray replaces the replica meanwhile)."""
    deadline = time.monotonic() + seconds
    response = send()
    while response.status_code == 503 and time.monotonic() < deadline:
        error_of(response, 503, "replica_unavailable")
        time.sleep(1.0)
        response = send()
    return response


def holders_of(url: str, adapter: str) -> list[str]:
    """The replicas whose engines hold `adapter` resident (from /v1/status)."""
    status = httpx.get(f"{url}/v1/status", headers=AUTH).json()
    return [
        base["replica"]
        for base in status["loaded"]
        if any(a["name"] == adapter for a in base["resident"])
    ]


def engine_actor(replica: str):
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if "LorahubEngine" in actor["name"] and actor["name"].endswith(replica):
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise AssertionError(f"no actor for replica {replica}")


def test_without_ray_the_cli_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = CliRunner().invoke(main, ["serve", "--ray", "--replicas", "2"])
    assert result.exit_code == 1
    lines = [line for line in result.output.strip().splitlines() if line]
    assert lines == ['Error: Ray Serve is not installed: pip install "lorahub[ray]"']


def test_print_config_is_a_serve_config_file():
    result = CliRunner().invoke(
        main,
        ["serve", "--ray", "--print-config", "--replicas", "2", "--max-replicas", "5",
         "--gpus-per-replica", "1", "--sets-per-replica", "6", "--port", "9000",
         "--adapters-from", "hub"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.stdout)
    app = config["applications"][0]
    assert app["import_path"] == "lorahub.server.ray_serve:build_app"
    assert app["args"]["max_sets"] == 6 and app["args"]["token"] is None
    assert app["args"]["adapters_from"] == "hub"
    engine = next(d for d in app["deployments"] if d["name"] == "LorahubEngine")
    assert engine["ray_actor_options"]["num_gpus"] == 1
    assert engine["autoscaling_config"]["min_replicas"] == 2
    assert engine["autoscaling_config"]["max_replicas"] == 5
    assert config["http_options"]["port"] == 9000
    if HAS_RAY:
        from ray.serve.schema import ServeDeploySchema

        ServeDeploySchema.parse_obj(config)  # what `serve deploy` validates
