"""The registry commands through click: output, --json, errors, escaping, files never deleted by accident."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lorahub.cli import main
from lorahub.registry import Registry
from tests.test_registry import write_lora


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_add_list_show_tag_rm(tmp_path: Path) -> None:
    f = write_lora(tmp_path / "neon.safetensors", 1)
    added = json.loads(
        run("add", f, "--tag", "style", "--description", "[bold red]boom[/] & co", "--json")
    )
    assert added[0]["name"] == "neon" and added[0]["path"] == str(f.resolve())
    run("add", write_lora(tmp_path / "neon2.safetensors", 2), "--name", "neon", "--version", "2")
    assert "exists" in run("add", tmp_path / "neon2.safetensors", "--name", "neon", ok=False)
    listed = json.loads(run("list", "--json", "--tag", "style"))
    assert [r["ref"] for r in listed] == ["neon"] and listed[0]["metadata"] is None
    assert "neon@2" in run("list", "--sort", "rank") and "2 adapter(s)" in run("list", "-q", "neon")
    shown = run("show", added[0]["autov2"])
    assert "[bold red]boom[/] & co" in shown  # free text is printed literally, not as markup
    full = json.loads(run("show", added[0]["autov3"], "--json"))
    assert set(full) == set(added[0]) | {"lineage"} and full["metadata"] == {}
    assert (
        json.loads(run("show", "neon", "--json"))["ref"] == "neon@2"
    )  # a bare name is the newest version
    run("rm", "neon@2")
    assert (tmp_path / "neon2.safetensors").is_file()
    run("tag", "neon", "night", "city")
    assert json.loads(run("show", "neon", "--json"))["tags"] == ["city", "night", "style"]
    run("untag", "neon", "city")
    assert [
        r["ref"] for r in json.loads(run("list", "--tag", "night", "--tag", "style", "--json"))
    ] == ["neon"]
    assert "no adapter matches 'ghost'" in run("show", "ghost", ok=False)
    run("rm", "neon", "--delete-file")
    assert not f.exists() and json.loads(run("list", "--json")) == []


def test_scan_verify_and_db(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_lora(lib / "x.safetensors", 1)
    write_lora(lib / "y.safetensors", 1, metadata={"note": "[link=http://evil]x[/link]"})
    (lib / "bad.safetensors").write_bytes(b"garbage!")
    report = json.loads(run("scan", lib, "--json"))
    assert len(report["new"]) == 2 and len(report["errors"]) == 1 and len(report["duplicates"]) == 1
    text = run("scan", lib)
    assert "unchanged" in text and "bad.safetensors" in text
    assert "hashes were not computed" in run("scan", lib, "--no-hash")
    (lib / "x.safetensors").unlink()
    verified = json.loads(run("verify", "--json"))
    assert [i["name"] for i in verified["missing"]] == ["x"] and [
        i["name"] for i in verified["ok"]
    ] == ["y"]
    status = json.loads(run("db", "status", "--json"))
    assert status["migrations"][0] == {"name": "0001_adapters_and_tags", "applied": True}
    assert "applied" in run("db", "status")
    out = tmp_path / "example.db"
    run("db", "example", "-o", out, "--schema-only")
    assert Registry(out).count_adapters() == 0


def test_add_folder_and_bad_input(tmp_path: Path) -> None:
    write_lora(tmp_path / "dir" / "one.safetensors", 1)
    write_lora(tmp_path / "dir" / "two.safetensors", 2)
    assert [
        r["name"] for r in json.loads(run("add", tmp_path / "dir", "--tag", "batch", "--json"))
    ] == ["one", "two"]
    (tmp_path / "w.pt").write_bytes(b"\x80\x02}q\x00.")
    err = run("add", tmp_path / "w.pt", ok=False)
    assert "--trust-pickle" in err and "Traceback" not in err
    assert "invalid name" in run(
        "add", tmp_path / "dir" / "one.safetensors", "--name", "no good", ok=False
    )


def test_list_table_reads_well_at_80_and_120_columns(tmp_path: Path) -> None:
    """Short fields never wrap; a name folds only when it cannot fit; extra columns go first."""
    long_name = "sd15_diffusers-attnproc_r4_catundchat"
    for i, name in enumerate(["neon-city", "example-light", long_name]):
        run(
            "add",
            write_lora(tmp_path / f"{name}.safetensors", i, rank=4 + 4 * i),
            "--tag",
            "demo",
            "--tag",
            "example",
        )
    runner = CliRunner()
    lines = {}
    for width in (80, 120):
        out = runner.invoke(main, ["list"], env={"COLUMNS": str(width)}).output
        lines[width] = out.splitlines()
        assert all(len(line) <= width for line in lines[width]), out
        for whole in ("neon-city", "example-light", "kohya", "demo,", "example", " KB  "):
            assert any(whole in line for line in lines[width]), (whole, out)
    assert "autov3" in lines[120][1] and "alpha" in lines[120][1]
    assert any(long_name in line and "demo, example" in line for line in lines[120])  # all whole
    assert "autov3" not in lines[80][1] and "size" in lines[80][1]
    rows = [line for line in lines[80] if line.startswith(("neon", "example", "sd15"))]
    assert len(rows) == 3 and all("KB" in row for row in rows)  # one line each but the long name


def test_add_peft_folder_as_one_adapter(tmp_path: Path) -> None:
    """A PEFT folder (adapter_config.json + adapter_model.safetensors) is one adapter: --name and
    --copy apply, and the config travels with the copy."""
    folder = tmp_path / "my-peft"
    write_lora(folder / "adapter_model.safetensors", 3)
    (folder / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 2}')
    added = json.loads(run("add", folder, "--name", "peft-one", "--copy", "--json"))
    assert [a["name"] for a in added] == ["peft-one"] and added[0]["managed"]
    assert (Path(added[0]["path"]).parent / "adapter_config.json").is_file()
    assert "apply to a single file" in run("add", tmp_path, "--name", "x", ok=False)


def test_show_summarises_lineage_details() -> None:
    from lorahub.cli.registry_cmds import _brief

    details = {"method": "svd", "overall_rel_error": 0.123456, "modules": [{"name": "m"}] * 500,
               "input": {"name": "a", "weight": 0.7}}  # fmt: skip
    text = _brief(details)
    assert text.startswith("method=svd") and "overall_rel_error=0.1235" in text
    assert "modules: 500 item(s)" in text and '"name"' not in text
