"""lorahub.formats on real published files and on broken input: header-only, no torch needed."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lorahub.errors import BadFileError, NotFoundError, UntrustedFileError
from lorahub.formats import hash_file, inspect_file, read_header

# name -> (format, network, family, rank, components, modules, alpha)  (figures from SOURCES.md)
EXPECTED = {
    "sd15_diffusers-attnproc_r4_catundchat.safetensors": (
        "diffusers-attnproc",
        "lora",
        "sd1",
        4,
        ["unet"],
        128,
        None,
    ),
    "sd15-te_peft_r8_hansjohn819.safetensors": (
        "peft",
        "lora",
        "sd1",
        8,
        ["text_encoder"],
        24,
        8.0,
    ),
    "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors": (
        "lycoris",
        "lokr",
        "sd1",
        4,
        ["unet", "text_encoder"],
        350,
        4.0,
    ),
    "sd15_cloneofsimo_r4_analog-svd.safetensors": (
        "cloneofsimo",
        "lora",
        "sd1",
        4,
        ["unet", "text_encoder"],
        192,
        None,
    ),
}
SHA256 = {
    "sd15_diffusers-attnproc_r4_catundchat.safetensors": "fb286c8e569d6a07401bd5599d3d1a64126c0b240d2d1d00174602a967e59c9b",
    "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors": "86c94ad35cf53921f26c7888f018324753813189f5baf504aff03f31c5bbf734",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_fixture_inspected(fixtures_dir, name):
    fmt, net, family, rank, components, count, alpha = EXPECTED[name]
    info = inspect_file(fixtures_dir / name)
    assert (info.format, info.network_type, info.base_family) == (fmt, net, family)
    assert (info.rank, info.components, info.module_count, info.alpha) == (
        rank,
        components,
        count,
        alpha,
    )
    assert info.rank_summary == {str(rank): count}
    assert info.base_conflict is None and info.base_evidence
    assert info.header_bytes < info.size / 2, "inspect must read the header, not the tensors"
    json.dumps(info.to_json())


def test_attnproc_names_are_canonical(fixtures_dir):
    from lorahub.formats.analyze import analyze

    names = set(
        analyze(fixtures_dir / "sd15_diffusers-attnproc_r4_catundchat.safetensors").layout.modules
    )
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0" in names
    assert "unet.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v" in names


def test_lokr_fixture_metadata_summary(fixtures_dir):
    info = inspect_file(fixtures_dir / "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors")
    s = info.summary
    assert (s["steps"], s["epochs"], s["network_dim"], s["network_alpha"]) == (3010, 10, 4, 4.0)
    assert (
        s["network_args"]["algo"] == "lokr"
        and s["unet_lr"] == 0.0003
        and s["text_encoder_lr"] == 0.00015
    )
    assert info.trigger_words[0] == "smart falcon \\(umamusume\\)"
    assert "metadata ss_v2=False (not SD2) agrees" in info.base_evidence
    assert "unet.down_blocks.0.resnets.0.conv1" in inspect_names(
        fixtures_dir / "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors"
    )


def inspect_names(path: Path) -> set[str]:
    from lorahub.formats.analyze import analyze

    return set(analyze(path).layout.modules)


def test_peft_alpha_comes_from_sidecar(fixtures_dir, tmp_path):
    src = fixtures_dir / "sd15-te_peft_r8_hansjohn819.safetensors"
    alone = tmp_path / "x.safetensors"
    alone.write_bytes(src.read_bytes())
    assert inspect_file(alone).alpha is None  # no sidecar: alpha unknown (= rank)
    folder = tmp_path / "peft"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(src.read_bytes())
    config = json.loads(
        (fixtures_dir / "sd15-te_peft_r8_hansjohn819.adapter_config.json").read_text()
    )
    (folder / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": 16}))
    info = inspect_file(folder)
    assert (info.format, info.alpha, info.rank, info.components) == (
        "peft",
        16.0,
        8,
        ["text_encoder"],
    )


def test_hashes_match_sources_and_kohya_tensor_hash(fixtures_dir):
    for name, digest in SHA256.items():
        h = hash_file(fixtures_dir / name)
        assert h.sha256 == digest and h.autov2 == digest[:10]
    lokr = fixtures_dir / "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors"
    h = hash_file(lokr)
    _, meta, _ = read_header(lokr)
    assert h.tensor_sha256 == meta["sshs_model_hash"]  # kohya records the same tensor-only hash
    assert h.autov3 == h.tensor_sha256[:12]
    assert inspect_file(lokr, hash=True).hashes == h


def _safetensors(path: Path, metadata: dict[str, str], payload: bytes = b"\0" * 16) -> Path:
    header = {
        "__metadata__": metadata,
        "a.lora_down.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    }
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)
    return path


def test_tensor_hash_ignores_metadata(tmp_path):
    a = hash_file(_safetensors(tmp_path / "a.safetensors", {"x": "1"}))
    b = hash_file(_safetensors(tmp_path / "b.safetensors", {"x": "a much longer value"}))
    c = hash_file(_safetensors(tmp_path / "c.safetensors", {"x": "1"}, b"\1" * 16))
    assert a.sha256 != b.sha256 and a.tensor_sha256 == b.tensor_sha256
    assert c.tensor_sha256 != a.tensor_sha256


def test_unknown_format_reports_key_patterns(tmp_path):
    path = tmp_path / "weird.safetensors"
    header = {
        f"model.layer{i}.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
        for i in range(3)
    }
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 12)
    info = inspect_file(path)
    assert (info.format, info.network_type, info.base_family, info.module_count) == (
        "unknown",
        "unknown",
        "unknown",
        0,
    )
    assert info.key_patterns == ["model.layer*.weight"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "empty"),
        ("short", "truncated"),
        ("header_past_end", "larger than the file"),
        ("not_json", "not JSON"),
        ("json_list", "not a JSON object"),
        ("tensor_past_end", "truncated"),
        ("text", "not a safetensors file"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, fixtures_dir, case, message):
    path = tmp_path / "bad.safetensors"
    good = (fixtures_dir / "sd15-te_peft_r8_hansjohn819.safetensors").read_bytes()
    data = {
        "empty": b"",
        "short": b"\x10\0\0",
        "header_past_end": struct.pack("<Q", 5000) + b"{}",
        "not_json": struct.pack("<Q", 4) + b"\xff{x}",
        "json_list": struct.pack("<Q", 2) + b"[]",
        "tensor_past_end": good[: len(good) // 2],
        "text": b"this is a readme, not weights\n" * 4,
    }[case]
    path.write_bytes(data)
    with pytest.raises(BadFileError, match=message) as exc:
        inspect_file(path)
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError):
        inspect_file(tmp_path / "nope.safetensors")


def test_pickle_refused_unless_trusted(tmp_path):
    import torch

    path = tmp_path / "lora.pt"
    torch.save({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(2, 32),
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(32, 2),
                "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(1.0)}, path)  # fmt: skip
    renamed = (
        tmp_path / "lora.safetensors"
    )  # a pickle under a safetensors name is caught by its magic
    renamed.write_bytes(path.read_bytes())
    for p in (path, renamed):
        with pytest.raises(UntrustedFileError, match="--trust-pickle"):
            inspect_file(p)
    info = inspect_file(path, trust_pickle=True)
    assert (info.format, info.rank, info.alpha, info.module_count) == ("kohya", 2, 1.0, 1)
    from lorahub.formats import open_adapter

    m = open_adapter(path, trust_pickle=True).module("unet.down_blocks.0.attentions.0.proj_in")
    assert m.scale == 0.5 and tuple(m.delta_weight().shape) == (32, 32)


def test_pickle_through_the_cli(tmp_path):
    """`add` and `scan` refuse a pickle in one line and register nothing; a scan names it as
    skipped; with --trust-pickle it is read (weights only), a later untrusted scan keeps it, and
    a pickle that would run code is refused even when trusted."""
    import json
    import os

    import torch
    from click.testing import CliRunner

    from lorahub.cli import main

    lib = tmp_path / "lib"
    lib.mkdir()
    key = "lora_unet_down_blocks_0_attentions_0_proj_in"
    torch.save({f"{key}.lora_down.weight": torch.randn(2, 32),
                f"{key}.lora_up.weight": torch.randn(32, 2)}, lib / "old.ckpt")  # fmt: skip

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    r = CliRunner()

    def run(*args):
        return r.invoke(main, [str(a) for a in args])

    refused = run("add", lib / "old.ckpt")
    assert refused.exit_code == 1 and "--trust-pickle" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    report = json.loads(run("scan", lib, "--json").output)
    assert [(i["path"], "--trust-pickle" in i["detail"]) for i in report["skipped"]] == [
        (str(lib / "old.ckpt"), True)
    ]
    assert json.loads(run("list", "--json").output) == []
    evil = run("add", tmp_path / "evil.pt", "--trust-pickle")
    assert (
        evil.exit_code == 1 and "refused, not run" in evil.output and "posix.system" in evil.output
    )
    assert len(evil.output.strip().splitlines()) == 1 and not (tmp_path / "pwned").exists()
    added = json.loads(run("add", lib / "old.ckpt", "--trust-pickle", "--json").output)
    assert [(a["name"], a["format"], a["rank"], a["tensor_sha256"]) for a in added] == [
        ("old", "kohya", 2, None)
    ]
    again = json.loads(
        run("scan", lib, "--json").output
    )  # untrusted rescan: unchanged, not missing
    assert [i["name"] for i in again["unchanged"]] == ["old"] and not again["missing"]


def test_cli_inspect_json(fixtures_dir):
    from lorahub.cli import main

    path = fixtures_dir / "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors"
    result = CliRunner().invoke(main, ["inspect", str(path), "--json", "--hash"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["format"], data["network_type"], data["base_family"], data["module_count"]) == (
        "lycoris",
        "lokr",
        "sd1",
        350,
    )
    assert data["hashes"]["sha256"] == SHA256[path.name] and data["rank_summary"] == {"4": 350}
    human = CliRunner().invoke(main, ["inspect", str(path)])
    assert human.exit_code == 0 and "lokr" in human.output and "smart falcon" in human.output


def test_cli_inspect_spectrum(fixtures_dir):
    from lorahub.cli import main

    path = fixtures_dir / "sd15_diffusers-attnproc_r4_catundchat.safetensors"
    result = CliRunner().invoke(main, ["inspect", str(path), "--json", "--spectrum"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.output)["spectrum"]
    assert spec["summary"]["modules"] == 128
    assert all(
        1 <= m["effective_rank_90"] <= m["effective_rank_99"] <= 4 for m in spec["modules"].values()
    )


def test_cli_bad_input_one_line_exit_1(tmp_path):
    from lorahub.cli import main

    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x05\0\0")
    result = CliRunner().invoke(main, ["inspect", str(bad)])
    assert (
        result.exit_code == 1
        and result.output.strip().count("\n") == 0
        and "truncated" in result.output
    )
    pickle = tmp_path / "x.ckpt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    result = CliRunner().invoke(main, ["inspect", str(pickle)])
    assert result.exit_code == 1 and "--trust-pickle" in result.output


def test_inspect_imports_no_torch(fixtures_dir):
    path = fixtures_dir / "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors"
    code = (
        "import sys\nfrom click.testing import CliRunner\nimport lorahub.formats\nfrom lorahub.cli import main\n"
        f"r = CliRunner().invoke(main, ['inspect', {str(path)!r}, '--hash'])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers', 'peft', 'safetensors.torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_inspect_by_registry_name(fixtures_dir):
    from lorahub.cli import main
    from lorahub.registry import Registry

    Registry().add_adapter(
        fixtures_dir / "sd15_diffusers-attnproc_r4_catundchat.safetensors", name="weapons"
    )
    result = CliRunner().invoke(main, ["inspect", "weapons", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["format"] == "diffusers-attnproc"
    missing = CliRunner().invoke(main, ["inspect", "no-such-adapter"])
    assert missing.exit_code == 1
