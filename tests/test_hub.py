"""Push and pull against the local Hub server with the real huggingface_hub client (regular and LFS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi, ModelCard, hf_hub_download

from lorahub.app.hub import pull_adapter, push_adapter
from lorahub.cli import main
from lorahub.errors import HubError, InvalidInputError, NotFoundError
from lorahub.hub import client
from lorahub.registry import Registry
from tests.hub_fixtures import use_lfs
from tests.hub_server import HUB_TOKEN, HubServer

WEIGHTS = "pytorch_lora_weights.safetensors"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry without real waiting."""
    monkeypatch.setattr(client, "BACKOFF_S", 0.01)


@pytest.fixture(params=["regular", "lfs"])
def any_hub(
    request: pytest.FixtureRequest, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> HubServer:
    """The server in regular-upload mode, then in LFS mode with Xet off."""
    return use_lfs(hub, monkeypatch) if request.param == "lfs" else hub


@pytest.fixture(scope="session")
def kohya_file(example_adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """example-light (UNet + text encoder) written in the kohya/A1111 layout."""
    from lorahub.formats import open_adapter, write_adapter

    dest = tmp_path_factory.mktemp("kohya") / "light_kohya.safetensors"
    with open_adapter(example_adapters["example-light"]) as reader:
        write_adapter(reader.modules(), dest, format="kohya", base_family="tiny-sd1")
    return dest


@pytest.fixture
def reg(example_adapters: dict[str, Path]) -> Registry:
    """A registry holding example-style as `style` (tags, triggers, description)."""
    registry = Registry()
    registry.add_adapter(
        example_adapters["example-style"], name="style", tags=["anime", "test"],
        trigger_words=["stylized"], description="A test style.",
    )  # fmt: skip
    yield registry
    registry.close()


def commits(hub: HubServer, repo: str) -> int:
    return len(hub.calls("POST", f"/api/models/{repo}/commit/"))


def deltas(path: str | Path) -> dict[str, object]:
    from lorahub.formats import open_adapter

    with open_adapter(path) as reader:
        return {name: m.delta_weight() for name, m in reader.modules()}


def test_push_round_trip_and_idempotent(
    any_hub: HubServer, hub_repo_id: str, reg: Registry
) -> None:
    result = push_adapter("style", hub_repo_id, registry=reg)
    assert result.changed and set(result.uploaded) == {WEIGHTS, "README.md"}
    head = HfApi().repo_info(hub_repo_id).sha
    assert result.commit_sha == head and len(head) == 40
    local = Path(reg.get_adapter("style").path).read_bytes()
    assert Path(hf_hub_download(hub_repo_id, WEIGHTS)).read_bytes() == local
    tree = {f.path: f for f in HfApi().list_repo_tree(hub_repo_id)}
    assert (tree[WEIGHTS].lfs is not None) == any_hub.lfs_mode
    before = commits(any_hub, hub_repo_id)
    again = push_adapter("style", hub_repo_id, registry=reg)
    assert again.commit_sha == head and not again.changed and again.uploaded == ()
    assert commits(any_hub, hub_repo_id) == before and HfApi().repo_info(hub_repo_id).sha == head
    assert again.card == result.card
    pubs = reg.publications("style")
    assert [(p.repo, p.revision, p.commit_sha) for p in pubs] == [(hub_repo_id, "main", head)]
    assert pubs[0].url == f"{any_hub.url}/{hub_repo_id}"


def test_changed_adapter_makes_one_new_commit(
    hub: HubServer, hub_repo_id: str, reg: Registry
) -> None:
    first = push_adapter("style", hub_repo_id, registry=reg, private=True)
    assert HfApi().repo_info(hub_repo_id).private is True
    reg.update_adapter("style", description="A better description.")
    second = push_adapter("style", hub_repo_id, registry=reg, message="new words")
    assert (
        second.changed
        and second.uploaded == ("README.md",)
        and second.commit_sha != first.commit_sha
    )
    assert HfApi().list_repo_commits(hub_repo_id)[0].title == "new words"
    assert len(reg.publications("style")) == 2
    dev = push_adapter("style", hub_repo_id, registry=reg, revision="dev")
    assert (
        not dev.changed and dev.commit_sha == second.commit_sha
    )  # new branch from main: same files
    reg.update_adapter("style", description="Only on dev.")
    dev = push_adapter("style", hub_repo_id, registry=reg, revision="dev")
    assert dev.changed and dev.url.endswith(f"{hub_repo_id}/tree/dev")
    assert HfApi().repo_info(hub_repo_id, revision="dev").sha == dev.commit_sha
    assert HfApi().repo_info(hub_repo_id).sha == second.commit_sha
    assert reg.publications("style")[-1].revision == "dev"


def test_card_fields_survive_model_card_load(
    hub: HubServer, hub_repo_id: str, reg: Registry, tmp_path: Path
) -> None:
    preview = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(preview)
    reg.set_preview("style", preview)
    push_adapter("style", hub_repo_id, registry=reg, license="mit")
    card = ModelCard.load(hub_repo_id)
    data = card.data.to_dict()
    assert data["base_model"] == "lorahub/tiny-sd1" and data["base_model_relation"] == "adapter"
    assert data["library_name"] == "diffusers" and data["license"] == "mit"
    assert data["tags"] == ["lora", "text-to-image", "diffusers", "tiny-sd1", "anime", "test"]
    assert data["instance_prompt"] == "stylized"
    assert data["widget"] == [{"text": "stylized", "output": {"url": "images/preview.png"}}]
    assert f'load_lora_weights("{hub_repo_id}"' in card.text and "A test style." in card.text
    record = reg.get_adapter("style")
    assert record.sha256 in card.text and record.autov3 in card.text
    info = HfApi().model_info(hub_repo_id)
    assert info.card_data["instance_prompt"] == "stylized"
    assert "images/preview.png" in {s.rfilename for s in info.siblings}


def test_push_kohya_uploads_diffusers_file(
    any_hub: HubServer, hub_repo_id: str, kohya_file: Path
) -> None:
    from lorahub.formats import inspect_file

    reg = Registry()
    reg.add_adapter(kohya_file, name="light")
    result = push_adapter("light", hub_repo_id, registry=reg, also=["kohya"])
    assert {f.path_in_repo: f.role for f in result.files} == {
        WEIGHTS: "weights", "light.safetensors": "kohya", "README.md": "card",
    }  # fmt: skip
    pushed = hf_hub_download(hub_repo_id, WEIGHTS)
    info = inspect_file(pushed)
    assert info.format == "diffusers" and info.base_family == "tiny-sd1"
    assert set(info.components) == {"unet", "text_encoder"}
    assert (
        Path(hf_hub_download(hub_repo_id, "light.safetensors")).read_bytes()
        == kohya_file.read_bytes()
    )
    want, got = deltas(kohya_file), deltas(pushed)
    assert want.keys() == got.keys()
    assert all((want[k] - got[k]).abs().max().item() < 1e-6 for k in want)
    again = push_adapter("light", hub_repo_id, registry=reg, also=["kohya"])
    assert not again.changed and again.commit_sha == result.commit_sha


def test_pull_kohya_repo(any_hub: HubServer, hub_repo_id: str, kohya_file: Path) -> None:
    api = HfApi()
    api.create_repo(hub_repo_id)
    readme = "---\nbase_model: someone/base-model\ninstance_prompt: glow, shiny\ntags:\n- lora\n- neon\n---\n# light\n\nA glowing light.\n"
    api.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=hub_repo_id)
    api.upload_file(
        path_or_fileobj=str(kohya_file), path_in_repo="light_v2.safetensors", repo_id=hub_repo_id
    )
    sha = api.repo_info(hub_repo_id).sha
    record = pull_adapter(f"{hub_repo_id}@main", name="light")
    assert record.format == "kohya" and record.base_family == "tiny-sd1" and record.source == "hub"
    assert record.managed and Path(record.path).read_bytes() == kohya_file.read_bytes()
    assert record.trigger_words == ("glow", "shiny") and record.description == "A glowing light."
    assert record.tags == ("neon",)
    reg = Registry()
    (edge,) = reg.lineage("light")
    assert (edge.relation, edge.parent_kind, edge.parent_id) == (
        "pulled-from",
        "hub_repo",
        hub_repo_id,
    )
    assert edge.details == {
        "repo": hub_repo_id, "revision": "main", "commit": sha, "file": "light_v2.safetensors",
        "base_model": "someone/base-model",
    }  # fmt: skip
    with pytest.raises(Exception, match="exists"):
        pull_adapter(hub_repo_id, name="light")
    assert pull_adapter(hub_repo_id, name="light", force=True).sha256 == record.sha256


def test_pull_picks_like_diffusers_and_refuses_ambiguity(
    hub: HubServer, hub_repo_id: str, example_adapters, kohya_file: Path
) -> None:
    api = HfApi()
    api.create_repo(hub_repo_id)
    api.upload_file(
        path_or_fileobj=str(kohya_file), path_in_repo="a.safetensors", repo_id=hub_repo_id
    )
    api.upload_file(
        path_or_fileobj=str(kohya_file), path_in_repo="b.safetensors", repo_id=hub_repo_id
    )
    with pytest.raises(
        InvalidInputError, match=r"several weight files \(a.safetensors, b.safetensors\).*--file"
    ):
        pull_adapter(hub_repo_id)
    with pytest.raises(NotFoundError, match="no file 'c.safetensors'"):
        pull_adapter(hub_repo_id, filename="c.safetensors")
    assert pull_adapter(hub_repo_id, filename="b.safetensors", name="b").format == "kohya"
    api.upload_file(
        path_or_fileobj=str(example_adapters["example-style"]),
        path_in_repo=WEIGHTS,
        repo_id=hub_repo_id,
    )
    record = pull_adapter(hub_repo_id)
    assert record.name == hub_repo_id.split("/")[1] and record.format == "diffusers"


def test_dry_run_uploads_nothing(hub: HubServer, hub_repo_id: str, reg: Registry) -> None:
    result = push_adapter("style", hub_repo_id, registry=reg, dry_run=True, also=["kohya"])
    assert result.dry_run and result.commit_sha is None
    assert [f.path_in_repo for f in result.files] == [WEIGHTS, "style.safetensors", "README.md"]
    assert result.card.startswith("---\nbase_model: lorahub/tiny-sd1\n")
    assert hub.calls() == [] and reg.publications("style") == []
    out = CliRunner().invoke(main, ["push", "style", "--repo", hub_repo_id, "--dry-run"])
    assert out.exit_code == 0, out.output
    assert (
        "instance_prompt: stylized" in out.output
        and "would push" in out.output
        and hub.calls() == []
    )


def test_errors_are_one_line(
    hub: HubServer, hub_repo_id: str, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        HubError, match=r"^cannot read lorahub-tester/nope: Hub repo lorahub-tester/nope not found"
    ):
        pull_adapter("lorahub-tester/nope")
    with pytest.raises(HubError, match="permission denied on someone-else/x"):
        push_adapter("style", "someone-else/x", registry=reg)
    push_adapter("style", hub_repo_id, registry=reg)
    with pytest.raises(NotFoundError, match="revision not found"):
        pull_adapter(f"{hub_repo_id}@no-such-branch")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(HubError, match="not authorized on the Hub \\(no token: set HF_TOKEN"):
        push_adapter("style", f"{hub_repo_id}-new", registry=reg)
    with pytest.raises(HubError, match="the token was rejected"):
        push_adapter("style", hub_repo_id, registry=reg, token="hf_wrongtoken123456")
    with pytest.raises(InvalidInputError, match="invalid Hub repo"):
        push_adapter("style", "no-slash", registry=reg)
    assert hub.errors == []


def test_conflict_and_network_errors(
    hub: HubServer, hub_repo_id: str, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg.update_adapter("style", description="changed")
    hub.fail(r"/commit/", 409, message="Conflicting commit")
    with pytest.raises(HubError, match=r"conflict on .*Conflicting commit"):
        push_adapter("style", hub_repo_id, registry=reg)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(
        HubError, match=r"cannot reach the Hub at http://127.0.0.1:9 \(ConnectError\)"
    ):
        pull_adapter(hub_repo_id)


def test_transient_503_is_retried(hub: HubServer, hub_repo_id: str, reg: Registry) -> None:
    hub.fail(r"/preupload/", 503, times=2)
    hub.fail(r"/commit/", 503, times=1)
    result = push_adapter("style", hub_repo_id, registry=reg)
    assert result.changed and commits(hub, hub_repo_id) == 2  # one 503, one success
    assert [c.status for c in hub.calls("POST", "/preupload/")][:2] == [503, 503]
    hub.fail(r"/api/models/", 503, times=10)
    with pytest.raises(HubError, match="answered 503 after 4 attempts"):
        pull_adapter(hub_repo_id)


def test_token_never_leaks(
    hub: HubServer, hub_repo_id: str, reg: Registry, lorahub_home: Path
) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        main, ["push", "style", "--repo", hub_repo_id, "--json"], env={"HF_TOKEN": HUB_TOKEN}
    )
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(
        main, ["push", "style", "--repo", "someone-else/x"], env={"HF_TOKEN": HUB_TOKEN}
    )
    assert bad.exit_code == 1 and "permission denied" in bad.output
    pulled = runner.invoke(
        main, ["pull", hub_repo_id, "--name", "again", "--json"], env={"HF_TOKEN": HUB_TOKEN}
    )
    assert pulled.exit_code == 0, pulled.output
    shown = runner.invoke(main, ["show", "style", "--json"])
    assert json.loads(shown.output)["publications"][0]["repo"] == hub_repo_id
    listed = runner.invoke(main, ["list", "--published", "--json"])
    assert [r["name"] for r in json.loads(listed.output)] == ["style"]  # not the pulled copy
    wide = runner.invoke(main, ["show", "style"], env={"COLUMNS": "300"})
    assert hub_repo_id in wide.output and "publications" in wide.output
    reg.close()
    for f in lorahub_home.rglob("*"):
        if f.is_file():
            assert HUB_TOKEN.encode() not in f.read_bytes(), f
    assert HUB_TOKEN not in ok.output + bad.output + pulled.output + shown.output + wide.output
    assert HUB_TOKEN not in Path(hf_hub_download(hub_repo_id, "README.md")).read_text()


def test_push_mix_recipe(hub: HubServer, hub_repo_id: str, reg: Registry, example_adapters) -> None:
    from lorahub.types import MixMember

    reg.add_adapter(example_adapters["example-light"], name="light")
    reg.create_mix("duo", [MixMember("style", 0.7), MixMember("light", 0.4, te_weight=0.2)])
    with pytest.raises(InvalidInputError, match="not published"):
        push_adapter("duo", hub_repo_id, registry=reg, recipe=True)
    push_adapter("style", f"{hub_repo_id}-style", registry=reg)
    push_adapter("light", f"{hub_repo_id}-light", registry=reg)
    result = push_adapter("duo", hub_repo_id, registry=reg, recipe=True)
    recipe = json.loads(Path(hf_hub_download(hub_repo_id, "lorahub_recipe.json")).read_text())
    members = {m["name"]: m for m in recipe["members"]}
    assert members["style"]["repo"] == f"{hub_repo_id}-style" and members["style"]["weight"] == 0.7
    assert members["light"]["te_weight"] == 0.2
    assert members["light"]["sha256"] == reg.get_adapter("light").sha256
    assert reg.publications("duo", kind="mix")[0].commit_sha == result.commit_sha
    assert not push_adapter("duo", hub_repo_id, registry=reg, recipe=True).changed


def test_push_mix_baked(hub: HubServer, hub_repo_id: str, reg: Registry, example_adapters) -> None:
    from lorahub.formats import inspect_file
    from lorahub.types import MixMember

    reg.add_adapter(example_adapters["example-light"], name="light")
    reg.create_mix(
        "duo", [MixMember("style", 0.7), MixMember("light", 0.4)], description="Two together."
    )
    result = push_adapter("duo", hub_repo_id, registry=reg)
    assert [f.path_in_repo for f in result.files] == [WEIGHTS, "README.md"] and result.kind == "mix"
    info = inspect_file(hf_hub_download(hub_repo_id, WEIGHTS))
    assert (
        info.format == "diffusers"
        and info.rank_max == 12
        and set(info.components) == {"unet", "text_encoder"}
    )
    card = ModelCard.load(hub_repo_id)
    assert (
        "Two together." in card.text
        and "| style |" in card.text
        and "lorahub-mix" in card.data.tags
    )
    again = push_adapter("duo", hub_repo_id, registry=reg)
    assert not again.changed and again.commit_sha == result.commit_sha


def test_card_from_lineage_hides_local_paths(hub: HubServer, example_adapters) -> None:
    from lorahub.hub.card import adapter_card
    from lorahub.registry import LineageParent

    reg = Registry()
    reg.record_model(
        "base-x", example_adapters["example-style"].parent, {"base": "tiny"}, kind="base"
    )
    trained = [
        LineageParent("model", "base-x", "trained-from", {"base": "tiny", "path": "/secret/base"}),
        LineageParent("dataset", "abc123", "trained-from", {"path": "/home/me/data", "images": 5}),
    ]
    record = reg.add_adapter(example_adapters["example-light"], name="t", lineage=trained)
    card = adapter_card(record, "me/t", [], reg.lineage("t"))
    assert (
        "base_model: lorahub/tiny-sd1" in card and "/secret" not in card and "/home/me" not in card
    )
    assert "| images | 5 |" in card and "- trained-from dataset `abc123`" in card
    assert card == adapter_card(reg.get_adapter("t"), "me/t", [], reg.lineage("t"))


def test_cli_push_and_pull_options(hub: HubServer, hub_repo_id: str, reg: Registry) -> None:
    runner = CliRunner()
    args = ["push", "style", "--repo", hub_repo_id, "--revision", "dev", "-m", "from the cli"]
    out = runner.invoke(main, [*args, "--private", "--also", "kohya", "--license", "mit", "--json"])
    assert out.exit_code == 0, out.output
    pushed = json.loads(out.output)
    api = HfApi()
    assert api.repo_info(hub_repo_id).private is True
    assert api.list_repo_commits(hub_repo_id, revision="dev")[0].title == "from the cli"
    assert (
        pushed["revision"] == "dev"
        and pushed["commit_sha"] == api.repo_info(hub_repo_id, revision="dev").sha
    )
    assert "style.safetensors" in api.list_repo_files(hub_repo_id, revision="dev")
    assert "style.safetensors" not in api.list_repo_files(hub_repo_id)  # main untouched
    card = ModelCard.load(hf_hub_download(hub_repo_id, "README.md", revision="dev"))
    assert card.data.license == "mit"
    assert [(p.repo, p.revision) for p in reg.publications("style")] == [(hub_repo_id, "dev")]
    pull = ["pull", f"{hub_repo_id}@dev", "--file", "style.safetensors", "--name", "k"]
    got = runner.invoke(main, [*pull, "--json"])
    assert got.exit_code == 0, got.output
    record = json.loads(got.output)
    assert record["format"] == "kohya" and record["source"] == "hub"
    assert record["trigger_words"] == ["stylized"]
    again = runner.invoke(main, pull)
    assert again.exit_code == 1 and "exists" in again.output and "--version" in again.output
    v2 = runner.invoke(main, [*pull, "--version", "v2", "--json"])
    assert v2.exit_code == 0, v2.output
    assert json.loads(v2.output)["version"] == "v2"
    for bad in (["push", "style", "--repo", hub_repo_id, "--revision", "bad branch"],
                ["pull", f"{hub_repo_id}@a..b"]):  # fmt: skip
        out = runner.invoke(main, bad)
        assert out.exit_code == 1 and out.output.count("\n") == 1, out.output
        assert "invalid revision" in out.output


def test_token_from_stored_login(
    hub: HubServer, hub_repo_id: str, reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    token_file = tmp_path / "token"
    token_file.write_text(HUB_TOKEN)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    assert client.resolve_token() == HUB_TOKEN
    assert push_adapter("style", hub_repo_id, registry=reg).changed
    token_file.unlink()
    assert client.resolve_token() is None


def test_pull_refuses_bad_bytes_and_names_the_repo_file(hub: HubServer, hub_repo_id: str) -> None:
    from types import SimpleNamespace

    from lorahub.errors import BadFileError
    from lorahub.hub.pull import verify_download

    api = HfApi()
    api.create_repo(hub_repo_id)
    api.upload_file(path_or_fileobj=b"\x08" + b"\0" * 15, path_in_repo=WEIGHTS, repo_id=hub_repo_id)
    with pytest.raises(BadFileError) as err:
        pull_adapter(hub_repo_id, name="junk")
    assert f"{hub_repo_id}/{WEIGHTS}" in str(err.value) and ".pull-" not in str(err.value)
    assert not Registry().list_adapters()
    local = Path(hf_hub_download(hub_repo_id, WEIGHTS))
    (remote,) = api.get_paths_info(hub_repo_id, [WEIGHTS])
    verify_download(local, remote, "x")  # matches: no error
    for lie in (SimpleNamespace(lfs=None, blob_id="0" * 40),
                SimpleNamespace(lfs=SimpleNamespace(sha256="0" * 64), blob_id=None)):  # fmt: skip
        with pytest.raises(BadFileError, match="does not match the Hub's hash"):
            verify_download(local, lie, "x")
