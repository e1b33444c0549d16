"""`scan` takes in the sidecars other tools keep (written here in their real formats), reports bad
ones per file, never overwrites what the user set in lorahub, and re-reads only what changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lorahub.cli import main
from lorahub.registry import Registry


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def library(example_adapters, tmp_path):
    lib = tmp_path / "Lora"
    lib.mkdir()
    src = example_adapters["example-style"]
    for stem in "abcdefg":
        shutil.copy(src, lib / f"{stem}.safetensors")
    sha = _sha(src)
    civitai = {  # Civitai's model-version API object, as Civitai Helper saves it
        "id": 222, "modelId": 111, "name": "v2", "baseModel": "SD 1.5",
        "trainedWords": ["alpha style", "beta"], "description": "<p>From Civitai</p>",
        "model": {"name": "Alpha Style", "type": "LORA"},
        "files": [{"name": "a.safetensors", "hashes": {"AutoV2": sha[:10].upper(), "SHA256": sha.upper()}}],
    }  # fmt: skip
    (lib / "a.civitai.info").write_text(json.dumps(civitai))
    a1111 = {"description": "B's notes", "sd version": "SD1", "activation text": "b1, b2",
             "preferred weight": 0.8, "notes": "keep it light", "negative text": "blurry"}  # fmt: skip
    (lib / "b.json").write_text(json.dumps(a1111))
    manager = {"file_name": "c", "model_name": "C", "sha256": sha, "base_model": "SD 1.5",
               "modelDescription": "C from the manager", "notes": "", "usage_tips": '{"strength": 0.6}',
               "civitai": {"id": 9, "modelId": 8, "trainedWords": ["cee"]}}  # fmt: skip
    (lib / "c.metadata.json").write_text(json.dumps(manager))
    matrix = {"ModelId": 5, "VersionId": 6, "ModelName": "Dee", "ModelDescription": "D desc",
              "BaseModel": "SD 1.5", "TrainedWords": ["dee"], "Hashes": {"SHA256": sha}}  # fmt: skip
    (lib / "d.cm-info.json").write_text(json.dumps(matrix))
    (lib / "e.json").write_text("{not json")
    (lib / "f.civitai.info").write_text(
        json.dumps({**civitai, "files": [{"hashes": {"SHA256": "0" * 64}}]})
    )
    (lib / "g.json").write_bytes(b'{"description": "\xff\xfe bad"}')
    info = PngInfo()
    info.add_text("parameters", "a red circle <lora:a:0.7>\nSteps: 8, Seed: 3, Size: 64x64")
    Image.new("RGB", (8, 8), (220, 40, 40)).save(lib / "a.preview.png", pnginfo=info)
    Image.new("RGB", (8, 8), (40, 40, 220)).save(lib / "b.png")
    (lib / "d.preview.png").write_text("not an image")
    return lib


def _scan(lib, *extra):
    result = CliRunner().invoke(main, ["scan", str(lib), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_sidecar_kind_fills_the_record(library):
    report = _scan(library)
    assert len(report["new"]) == 7 and not report["errors"]
    with Registry() as reg:
        a, b, c, d = (reg.get_adapter(n) for n in "abcd")
        assert a.trigger_words == ("alpha style", "beta") and a.description == "<p>From Civitai</p>"
        fields = a.sidecar["fields"]
        assert fields["civitai_model_id"] == {"value": 111, "from": "a.civitai.info"}
        assert fields["source_url"]["value"] == "https://civitai.com/models/111?modelVersionId=222"
        assert "tiny-sd1" in a.sidecar["conflict"]  # "SD 1.5" on a tiny-sd1 file: shapes win
        assert a.base_family == "tiny-sd1"
        assert (
            b.trigger_words == ("b1", "b2")
            and b.sidecar["fields"]["preferred_weight"]["value"] == 0.8
        )
        assert b.sidecar["fields"]["negative_prompt"]["value"] == "blurry"
        assert c.description == "C from the manager" and c.trigger_words == ("cee",)
        assert c.sidecar["fields"]["preferred_weight"] == {"value": 0.6, "from": "c.metadata.json"}
        assert (
            d.trigger_words == ("dee",) and d.sidecar["fields"]["civitai_version_id"]["value"] == 6
        )
        images = reg.images("a")
        assert len(images) == 1 and images[0].params["seed"] == 3 and a.preview == images[0].file
        assert reg.get_adapter("b").preview and not reg.images("d")
    problems = " | ".join(
        i["detail"] for i in report["sidecars"] if i["detail"].startswith("problem")
    )
    for expected in ("e.json: not valid JSON", "f.civitai.info: describes another file",
                     "g.json: not UTF-8", "d.preview.png"):  # fmt: skip
        assert expected in problems, problems


def test_user_edits_win_and_only_changed_sidecars_are_read(library):
    _scan(library)
    with Registry() as reg:
        reg.update_adapter("b", description="mine")
    assert not _scan(library)["sidecars"]  # nothing changed: nothing re-read
    sidecar = library / "b.json"
    sidecar.write_text(json.dumps({"description": "theirs", "activation text": "new words"}))
    os.utime(sidecar, ns=(1, 2_000_000_000_000_000_000))
    report = _scan(library)
    assert [i["path"] for i in report["sidecars"]] == [str(library / "b.safetensors")]
    with Registry() as reg:
        b = reg.get_adapter("b")
        assert b.description == "mine" and b.trigger_words == ("new words",)
    assert len(_scan(library, "--refresh-sidecars")["sidecars"]) >= 4  # re-read on request


def test_a_huge_or_odd_sidecar_never_stops_the_scan(library):
    (library / "c.metadata.json").write_bytes(b"[" * 100_000)  # deep nesting
    (library / "a.civitai.info").write_bytes(b" " * (5 * 2**20))  # too big to read
    (library / "b.json").write_text(json.dumps(["a", "list"]))
    report = _scan(library)
    assert len(report["new"]) == 7 and not report["errors"]
    details = " | ".join(i["detail"] for i in report["sidecars"])
    assert "larger than" in details and "not an object" in details and "not valid JSON" in details


def test_sidecars_write_for_a1111_and_never_over_a_newer_file(library):
    _scan(library)
    with Registry() as reg:
        reg.update_adapter("a", description="curated in lorahub", trigger_words=["t1", "t2"])
    later = (library / "b.json").stat().st_mtime + 3600  # A1111 edited b.json after the scan
    os.utime(library / "b.json", (later, later))
    run = CliRunner().invoke(main, ["sidecars", "write", "a", "b", "--json"])
    assert run.exit_code == 0, run.output
    actions = {(os.path.basename(w["path"]), w["action"]) for w in json.loads(run.stdout)}
    assert ("a.json", "written") in actions and ("b.preview.png", "written") in actions
    assert ("a.preview.png", "unchanged") in actions  # the preview came from that very file
    assert ("b.json", "kept") in actions  # changed after lorahub's record: kept without --force
    meta = json.loads((library / "a.json").read_text())
    assert meta["description"] == "curated in lorahub" and meta["activation text"] == "t1, t2"
    assert meta["sd version"] == "Unknown"  # a tiny-sd1 file: no A1111 choice fits
    again = CliRunner().invoke(main, ["sidecars", "write", "a", "--json"])
    assert {w["action"] for w in json.loads(again.stdout)} == {"unchanged"}
    forced = CliRunner().invoke(main, ["sidecars", "write", "b", "--force", "--json"])
    assert ("json", "written") in {(w["path"][-4:], w["action"]) for w in json.loads(forced.stdout)}
    assert json.loads((library / "b.json").read_text())["activation text"] == "b1, b2"
    assert "--all" in CliRunner().invoke(main, ["sidecars", "write"]).output
