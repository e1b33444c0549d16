"""Export, resize, fuse (LoRA and LyCORIS), mixes and every refusal, through the library and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from lorahub.app import ops as api
from lorahub.cli import main
from lorahub.formats import open_adapter, read_header
from lorahub.registry import Registry
from lorahub.types import MixMember
from tests.test_ops_merge import WEIGHTS, unet_out

STYLE, LIGHT = "example-style", "example-light"


@pytest.fixture(scope="module")
def pipe(tiny_sd1):
    from lorahub.models import load_pipeline

    return load_pipeline("tiny", device="cpu", dtype="fp32")


@pytest.fixture
def reg(example_adapters):
    r = Registry()
    for name, path in example_adapters.items():
        r.add_adapter(path, name=name)
    return r


def cli(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_kohya_export_round_trips_in_diffusers(pipe, example_adapters, reg, tmp_path):
    out = tmp_path / "light-kohya.safetensors"
    report = json.loads(
        cli("export", LIGHT, "--format", "kohya", "-o", out, "--name", "light-k", "--json").output
    )
    with open_adapter(example_adapters[LIGHT]) as source:
        modules = len(list(source.modules()))
    assert report["overall_rel_error"] < 1e-6 and report["module_count"] == modules == 92
    header, meta, _ = read_header(out)
    keys = [k for k in header if k != "__metadata__"]
    assert any(k.startswith("lora_unet_") for k in keys) and any(
        k.startswith("lora_te_") for k in keys
    )
    assert (
        any(k.endswith(".alpha") for k in keys) and meta.get("ss_network_module") == "networks.lora"
    )
    original = unet_out(pipe, [example_adapters[LIGHT]], [1.0])
    torch.testing.assert_close(unet_out(pipe, [out], [1.0]), original, atol=1e-5, rtol=1e-5)
    back = tmp_path / "light-diffusers.safetensors"
    cli("export", out, "--format", "diffusers", "-o", back)
    torch.testing.assert_close(unet_out(pipe, [back], [1.0]), original, atol=1e-5, rtol=1e-5)
    assert [e.relation for e in reg.lineage("light-k")] == ["converted-from"]
    # a kohya file and a diffusers file merge as the two diffusers originals do
    merged = {}
    for tag, light in (("mixed", out), ("plain", LIGHT)):
        merged[tag] = tmp_path / f"{tag}.safetensors"
        cli("merge", f"{light}:0.4", f"{STYLE}:0.7", "--method", "cat", "-o", merged[tag])
    a, b = open_adapter(merged["mixed"]), open_adapter(merged["plain"])
    assert a.module_names() == b.module_names()
    for name in a.module_names():
        torch.testing.assert_close(
            a.module(name).delta_weight(), b.module(name).delta_weight(), atol=1e-7, rtol=1e-5
        )


def test_export_carries_metadata_across(example_adapters, reg, tmp_path):
    from safetensors.torch import load_file, save_file

    src = tmp_path / "tagged.safetensors"
    meta = {**read_header(example_adapters[LIGHT])[1], "ss_tag_frequency": '{"a": 1}'}
    save_file(load_file(str(example_adapters[LIGHT])), str(src), metadata=meta)
    kohya, back = tmp_path / "k.safetensors", tmp_path / "d.safetensors"
    cli("export", src, "--format", "kohya", "-o", kohya)
    cli("export", kohya, "--format", "diffusers", "-o", back, "--name", "tagged-back")
    for path, was in ((kohya, "diffusers"), (back, "kohya")):
        out = read_header(path)[1]
        assert out["ss_tag_frequency"] == '{"a": 1}' and out["lorahub_converted_from"] == was
    assert json.loads(read_header(back)[1]["lora_adapter_metadata"])  # the writer's own, rebuilt
    assert reg.get_adapter("tagged-back").base_family == "tiny-sd1"
    assert [e.relation for e in reg.lineage("tagged-back")] == []  # the file input is unregistered


def test_resize_error_is_monotone_in_rank(example_adapters, tmp_path):
    from lorahub.ops.resize import resize_adapter

    errors = [
        resize_adapter(
            example_adapters[LIGHT], tmp_path / f"r{r}.safetensors", rank=r
        ).overall_error
        for r in (1, 2, 4, 6, 8)
    ]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.3 and errors[-1] < 1e-6
    energy = resize_adapter(example_adapters[LIGHT], tmp_path / "e.safetensors", energy=0.8)
    assert all(m.rel_error <= (1 - 0.8) ** 0.5 + 1e-6 for m in energy.modules)
    assert open_adapter(tmp_path / "r2.safetensors").module(energy.modules[0].name).rank == 2


def test_resize_cli_registers_lineage(reg):
    cli("resize", LIGHT, "--rank", "2", "--name", "light-r2")
    record = reg.get_adapter("light-r2")
    assert record.rank == 2 and record.source == "resized"  # it was recorded as "merged"
    edge = reg.lineage("light-r2")[0]
    assert edge.relation == "resized-from" and edge.details["modules"][0]["rank_out"] == 2
    assert edge.details["registered"] == "light-r2"  # the lineage names what it made


def test_fuse_equals_the_unfused_mix(pipe, example_adapters, reg, tmp_path):
    from lorahub.models import load_pipeline

    out = tmp_path / "fused"
    cli("fuse", "--base", "tiny", f"{STYLE}:{WEIGHTS[0]}", f"{LIGHT}:{WEIGHTS[1]}", "-o", out)
    fused = load_pipeline(str(out), device="cpu", dtype="fp32")
    stacked = unet_out(pipe, [example_adapters[STYLE], example_adapters[LIGHT]], list(WEIGHTS))
    torch.testing.assert_close(unet_out(fused, [], []), stacked, atol=1e-5, rtol=1e-5)
    model = reg.get_model("fused")
    assert {e.relation for e in reg.model_lineage("fused")} == {
        "fused-from"
    } and model.path.endswith("fused")
    cli("fuse", "--base", "tiny", STYLE, "-o", out, ok=False)  # exists without --force


def _lycoris_file(path, tiny_sd1):
    """A kohya-named LoHa (linear + 3x3 conv) and LoKr (linear + conv) file for the tiny UNet."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    attn = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_"
    t = {
        f"{attn}to_q.hada_w1_a": r(32, 4), f"{attn}to_q.hada_w1_b": r(4, 32),
        f"{attn}to_q.hada_w2_a": r(32, 4), f"{attn}to_q.hada_w2_b": r(4, 32), f"{attn}to_q.alpha": torch.tensor(2.0),
        "lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a": r(32, 4),
        "lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_b": r(4, 288),
        "lora_unet_down_blocks_0_resnets_0_conv1.hada_w2_a": r(32, 4),
        "lora_unet_down_blocks_0_resnets_0_conv1.hada_w2_b": r(4, 288),
        "lora_unet_down_blocks_0_resnets_0_conv1.alpha": torch.tensor(4.0),
        f"{attn}to_v.lokr_w1": r(4, 4), f"{attn}to_v.lokr_w2": r(8, 8),
        "lora_unet_down_blocks_0_resnets_0_conv2.lokr_w1": r(4, 4),
        "lora_unet_down_blocks_0_resnets_0_conv2.lokr_w2": r(8, 8, 3, 3),
    }  # fmt: skip
    save_file(t, str(path))

    def hada(k):
        return (t[f"{k}.hada_w1_a"] @ t[f"{k}.hada_w1_b"]) * (
            t[f"{k}.hada_w2_a"] @ t[f"{k}.hada_w2_b"]
        )  # noqa: E731

    return {
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": hada(f"{attn}to_q") * 0.5,
        "down_blocks.0.resnets.0.conv1": (hada("lora_unet_down_blocks_0_resnets_0_conv1")).reshape(32, 32, 3, 3),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v": torch.kron(t[f"{attn}to_v.lokr_w1"], t[f"{attn}to_v.lokr_w2"]),
        "down_blocks.0.resnets.0.conv2": torch.kron(
            t["lora_unet_down_blocks_0_resnets_0_conv2.lokr_w1"][:, :, None, None], t["lora_unet_down_blocks_0_resnets_0_conv2.lokr_w2"]
        ),
    }  # fmt: skip


def test_lycoris_fuse_and_svd_merge(tiny_sd1, tmp_path):
    from safetensors.torch import load_file

    from lorahub.ops.merge import MergeOptions, merge_adapters

    src = tmp_path / "lyco.safetensors"
    deltas = _lycoris_file(src, tiny_sd1)
    api.fuse(Registry(), [MixMember(str(src), 0.5)], "tiny", tmp_path / "fused")
    fused = load_file(str(tmp_path / "fused" / "unet" / "diffusion_pytorch_model.safetensors"))
    base = load_file(str(tiny_sd1 / "unet" / "diffusion_pytorch_model.safetensors"))
    for path, delta in deltas.items():
        torch.testing.assert_close(
            fused[f"{path}.weight"], base[f"{path}.weight"] + 0.5 * delta, atol=1e-6, rtol=1e-5
        )
    report = merge_adapters(
        [api.I.spec_from_file(src)], tmp_path / "m.safetensors", MergeOptions("svd", rank=64)
    )
    assert report.overall_error < 1e-5
    merged = open_adapter(tmp_path / "m.safetensors")
    for path, delta in deltas.items():
        torch.testing.assert_close(
            merged.module(f"unet.{path}").delta_weight(), delta, atol=1e-5, rtol=1e-4
        )
    for cmd in (["merge", src, "--method", "cat", "-o", tmp_path / "c.safetensors"],
                ["export", src, "--format", "kohya", "-o", tmp_path / "k.safetensors"]):  # fmt: skip
        out = cli(*cmd, ok=False).output
        assert "does not support" in out or "LyCORIS" in out, out
    # resize (and export --rank) turn LyCORIS modules into LoRAs by their exact SVD
    cli("resize", src, "--rank", "64", "-o", tmp_path / "r.safetensors")
    resized = open_adapter(tmp_path / "r.safetensors")
    for path, delta in deltas.items():
        torch.testing.assert_close(
            resized.module(f"unet.{path}").delta_weight(), delta, atol=1e-5, rtol=1e-4
        )


def test_mix_cli_and_merge_from_mix(reg, tmp_path):
    cli(
        "mix",
        "create",
        "combo",
        f"{STYLE}:0.7",
        f"{LIGHT}:unet=0.4,te=0.2",
        "--blocks",
        f"{STYLE}=down:0.5,up:1.5",
    )
    shown = json.loads(cli("mix", "show", "combo", "--json").output)
    assert [m["weight"] for m in shown["members"]] == [0.7, 0.4] and shown["members"][1][
        "te_weight"
    ] == 0.2
    assert shown["members"][0]["block_weights"] == {"down": 0.5, "up": 1.5}
    assert "combo" in cli("mix", "list").output
    report = json.loads(
        cli("merge", "--mix", "combo", "--method", "cat", "--name", "baked", "--json").output
    )
    assert report["overall_rel_error"] < 1e-6 and report["inputs"][0]["block_weights"] == {
        "down": 0.5,
        "up": 1.5,
    }
    edges = reg.lineage("baked")
    assert len(edges) == 2 and {e.relation for e in edges} == {"merged-from"}
    assert edges[0].details["method"] == "cat" and "modules" in edges[0].details
    assert edges[0].details["registered"] == "baked"
    assert "beyond" in cli("mix", "create", "loud", f"{STYLE}:7").output
    cli("mix", "rm", "combo")
    cli("mix", "show", "combo", ok=False)


def test_refusals(reg, tiny_sdxl, tmp_path):
    from lorahub.examples import ExampleAdapter, write_example_adapter

    xl = write_example_adapter(
        "tiny-sdxl", tmp_path / "xl.safetensors", ExampleAdapter("xl", 4, 4.0, 9)
    )
    reg.add_adapter(xl, name="xl")
    cases = {
        "same base family": ["merge", STYLE, "xl", "--name", "x"],
        "no adapter matches": ["merge", STYLE, "nope", "--name", "x"],
        "list it once": ["merge", STYLE, f"{STYLE}:0.5", "--name", "x"],
        "one rank": ["merge", STYLE, LIGHT, "--method", "linear", "--name", "x"],
        "exists": ["merge", STYLE, LIGHT, "--name", LIGHT],
        "--name NAME": ["merge", STYLE, LIGHT],
        "--density applies": ["merge", STYLE, LIGHT, "--density", "0.3", "--name", "x"],
        "needs --rank": ["resize", LIGHT, "--name", "x"],
        "not both": ["merge", STYLE, "--mix", "m", "--name", "x"],
        "no such file": ["merge", f"{tmp_path}/gone.safetensors:0.5", "--name", "x"],
        "cannot load base model": [
            "fuse",
            "--base",
            tmp_path / "nobase",
            STYLE,
            "-o",
            tmp_path / "f",
        ],
    }
    for needle, args in cases.items():
        out = cli(*args, ok=False).output
        assert needle in out or (needle == "same base family" and "base famil" in out), (
            needle,
            out,
        )
    for cmd in (["resize", tmp_path / "gone.safetensors", "--rank", "2", "-o", tmp_path / "r"],
                ["export", tmp_path / "gone.safetensors", "--format", "kohya", "-o", tmp_path / "k"]):  # fmt: skip
        out = cli(*cmd, ok=False).output
        assert out.strip() == f"Error: no such file: {tmp_path / 'gone.safetensors'}", out
    assert not (tmp_path / "f").exists()
    cli("mix", "create", "m1", STYLE)
    assert "exists" in cli("mix", "create", "m1", LIGHT, ok=False).output
    cli("mix", "create", "m1", LIGHT, "--force")
    assert "tiny-sd1" in cli("mix", "create", "bad", STYLE, "xl", ok=False).output
    cli("merge", STYLE, LIGHT, "--name", LIGHT, "--force", "--method", "cat")
    assert reg.get_adapter(LIGHT).rank_max == 12
    assert not list((tmp_path).glob("x*.safetensors.*"))  # no half-written files left behind
