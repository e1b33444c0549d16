"""The family table (`lorahub.families`): each family's facts, and every place that decides a
family agrees with it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lorahub import families
from lorahub.errors import InvalidInputError

REAL = ("sd1", "sd2", "sdxl", "flux")
TINY = ("tiny-sd1", "tiny-sdxl")


def test_the_table_holds_every_family_the_formats_report():
    from lorahub.formats import BASE_FAMILIES

    assert families.ids() == REAL + TINY
    assert (*families.ids(), "unknown") == BASE_FAMILIES


@pytest.mark.parametrize(
    ("fid", "pipeline", "denoiser", "widths", "cross", "objective", "native"),
    [
        ("sd1", "StableDiffusionPipeline", "unet", (768,), 768, "epsilon", 512),
        ("sd2", "StableDiffusionPipeline", "unet", (1024,), 1024, "v_prediction", 768),
        ("sdxl", "StableDiffusionXLPipeline", "unet", (768, 1280), 2048, "epsilon", 1024),
        ("flux", "FluxPipeline", "transformer", (768, 4096), None, "flow_matching", 1024),
        ("tiny-sd1", "StableDiffusionPipeline", "unet", (32,), 32, "epsilon", 64),
        ("tiny-sdxl", "StableDiffusionXLPipeline", "unet", (40, 56), 96, "epsilon", 64),
    ],
)
def test_each_familys_facts(fid, pipeline, denoiser, widths, cross, objective, native):
    f = families.get(fid)
    assert f.id == fid and f.pipeline_class == pipeline and f.denoiser == denoiser
    assert tuple(te.width for te in f.text_encoders) == widths
    assert f.cross_width == cross and f.objective == objective and f.native_size == native
    assert f.objective in families.OBJECTIVES
    assert f.components == (denoiser, *("text_encoder", "text_encoder_2")[: len(widths)], "vae")
    assert f.lora_targets == ("to_q", "to_k", "to_v", "to_out.0")


def test_a_unet_crosses_attention_over_its_text_encoders_side_by_side():
    for f in families.FAMILIES.values():
        if f.denoiser == "unet":
            assert f.cross_width == sum(te.width for te in f.text_encoders), f.id


def test_kohya_and_modelspec_names():
    names = {
        fid: families.get(fid).names_for(families.get(fid).objective) for fid in families.ids()
    }
    assert names["sd1"] == families.KohyaNames("sd_v1", "stable-diffusion-v1")
    assert names["sd2"] == families.KohyaNames("sd_v2_768_v", "stable-diffusion-v2-768-v")
    assert families.get("sd2").names_for("epsilon") == families.KohyaNames(
        "sd_v2_512", "stable-diffusion-v2-512"
    )
    assert names["sdxl"] == families.KohyaNames("sdxl_base_v1-0", "stable-diffusion-xl-v1-base")
    assert names["tiny-sdxl"] == families.KohyaNames("tiny-sdxl", "tiny-sdxl")
    assert names["flux"] is None
    assert [families.kohya_version(f) for f in families.ids()] == [
        "sd_v1",
        "sd_v2",
        "sdxl_base_v1-0",
        None,
        None,
        None,
    ]


def test_tiny_variants_point_both_ways():
    assert families.get("sd1").tiny == "tiny-sd1" and families.get("sdxl").tiny == "tiny-sdxl"
    for tid in TINY:
        tiny = families.get(tid)
        assert tiny.is_tiny and families.get(str(tiny.tiny_of)).tiny == tid
        assert tiny.pipeline_class == families.get(str(tiny.tiny_of)).pipeline_class
    assert families.tiny_ids() == {
        "tiny": "tiny-sd1",
        "tiny-sd1": "tiny-sd1",
        "tiny-sdxl": "tiny-sdxl",
    }
    assert families.of_base_id("tiny") == "tiny-sd1" and families.of_base_id("runwayml/x") is None


def test_aliases_and_names_in_text():
    assert families.get("sd15").id == "sd1" and families.get("sd1.5").id == "sd1"
    assert families.get("sd21").id == "sd2" and families.canonical("weird") == "weird"
    assert sorted(families.HINT_ORDER) == sorted(families.ids())
    cases = {
        "sdxl_base_v1-0": "sdxl",
        "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd1",
        "stabilityai/stable-diffusion-2-1": "sd2",
        "sd_v2_768_v": "sd2",
        "FLUX.1-dev": "flux",
        "lorahub/tiny-sdxl": "tiny-sdxl",
        "tiny-sd1/lora": "tiny-sd1",
        "juggernaut-xl-v2-1": "sdxl",
        "my model": None,
    }
    assert {text: families.from_text(text) for text in cases} == cases


def test_shape_lookups():
    assert families.cross_widths() == {
        768: "sd1",
        1024: "sd2",
        2048: "sdxl",
        32: "tiny-sd1",
        96: "tiny-sdxl",
    }
    assert families.cross_widths(tiny=False) == {768: "sd1", 1024: "sd2", 2048: "sdxl"}
    assert families.sharing_first_encoder(768) == ("sd1", "sdxl", "flux")
    assert families.sharing_first_encoder(1024) == ()
    assert families.by_block_names(["transformer.single_transformer_blocks.0.attn.to_q"]) == "flux"
    assert families.by_block_names(["unet.down_blocks.0.attn1.to_q"]) is None
    assert families.by_denoiser("transformer") == "flux" and families.by_denoiser("unet") is None
    assert families.unet_family(2048, 2) == "sdxl" and families.unet_family(96, 2) == "tiny-sdxl"
    assert families.unet_family(320, 1) == "sd1" and families.unet_family(320, 2) == "sdxl"
    assert families.native_size("sdxl", 7) == 1024 and families.native_size(None, 7) == 7


def test_an_unknown_family_is_a_clear_error():
    with pytest.raises(InvalidInputError, match=r"unknown base family 'sd3': use one of sd1, sd2"):
        families.get("sd3")
    assert families.find("sd3") is None and families.find(None) is None


def _probe(widths: dict[str, int]) -> tuple[str | None, tuple[str, ...]]:
    """(family, fits) `probe_shapes` decides for modules of these input widths."""
    from lorahub.formats.layout import ModuleEntry
    from lorahub.formats.probe import Dims, probe_shapes

    modules = {n: ModuleEntry(n, {"down": f"{n}.down", "up": f"{n}.up"}) for n in widths}
    dims = {n: Dims(320, w, 4, False) for n, w in widths.items()}
    verdict = probe_shapes(modules, dims, "diffusers")
    return verdict.family, verdict.fits


UNET_K = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"


@pytest.mark.parametrize("fid", families.ids())
def test_the_probe_recognises_each_family_by_the_tables_widths(fid):
    f = families.get(fid)
    if f.cross_width is not None:
        assert _probe({UNET_K: f.cross_width}) == (fid, ())
    else:
        assert _probe({f"transformer.{f.block_names[0]}.0.attn.to_q": 3072}) == (fid, ())
    clip = {
        f"{te.component}.text_model.encoder.layers.0.self_attn.q_proj": te.width
        for te in f.text_encoders
        if "CLIP" in te.label  # T5's modules have other names
    }
    family, fits = _probe(clip)
    if len(clip) == 1 and fid in families.sharing_first_encoder(f.text_encoders[0].width):
        assert (family, fits) == ("sd1", ("sd1", "sdxl", "flux"))  # the metadata decides
    else:
        assert (family, fits) == (fid, ())


def _pipe(cross: int) -> SimpleNamespace:
    return SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(cross_attention_dim=cross)))


@pytest.mark.parametrize("fid", [f for f in families.ids() if families.get(f).cross_width])
def test_the_engine_and_the_server_read_a_bases_family_from_the_table(fid, tmp_path):
    from lorahub.inference.pipelines import base_family, pipeline_family

    width = families.get(fid).cross_width
    assert pipeline_family("some/model", _pipe(width)) == fid
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": width}))
    assert base_family(str(tmp_path)) == fid


def test_tiny_ids_name_their_family_everywhere():
    from lorahub.inference.pipelines import base_family, pipeline_family
    from lorahub.models import base_family_of
    from lorahub.tiny import TINY_IDS, tiny_family

    assert TINY_IDS == families.tiny_ids()
    for base, fid in families.tiny_ids().items():
        assert tiny_family(base) == base_family_of(base) == base_family(base) == fid
        assert pipeline_family(base, _pipe(1)) == fid
    assert pipeline_family("x", _pipe(320)) == "unknown (cross-attention 320)"
    assert base_family_of("stabilityai/stable-diffusion-2-1") is None


def test_the_family_check_takes_aliases_and_passes_unknowns():
    from lorahub.errors import IncompatibleError
    from lorahub.inference.pipelines import check_families
    from lorahub.types import AdapterSpec

    def spec(name, fam):
        return AdapterSpec(name=name, path=name, key=name, base_family=fam)

    check_families([spec("a", "sd15"), spec("b", "unknown"), spec("c", None)], "sd1", "base")
    check_families([spec("a", "sdxl")], None, "base")
    with pytest.raises(IncompatibleError, match="adapter a is for sd2, but base b is sd1"):
        check_families([spec("a", "sd21")], "sd1", "b")


@pytest.mark.parametrize(
    ("fid", "objective", "names"),
    [
        ("sd1", "epsilon", ("stable-diffusion-v1/lora", "sd_v1")),
        ("sd2", "v_prediction", ("stable-diffusion-v2-768-v/lora", "sd_v2_768_v")),
        ("sd2", "epsilon", ("stable-diffusion-v2-512/lora", "sd_v2_512")),
        ("sdxl", "epsilon", ("stable-diffusion-xl-v1-base/lora", "sdxl_base_v1-0")),
        ("tiny-sd1", "epsilon", ("tiny-sd1/lora", "tiny-sd1")),
        ("tiny-sdxl", "v_prediction", ("tiny-sdxl/lora", "tiny-sdxl")),
    ],
)
def test_training_names_a_lora_from_the_table(fid, objective, names):
    from lorahub.training.outputs import architecture

    assert architecture(fid, objective) == names


def test_training_reads_the_family_of_its_base_from_the_table():
    from lorahub.errors import UnsupportedError
    from lorahub.training.outputs import architecture, family

    def models(cross, encoders):
        return SimpleNamespace(unet=_pipe(cross).unet, text_encoders=[None] * encoders)

    for f in families.FAMILIES.values():
        if f.cross_width:
            assert family(models(f.cross_width, len(f.text_encoders)), "a/folder") == f.id
    assert family(models(1, 1), "tiny-sdxl") == "tiny-sdxl"
    assert family(models(320, 1), "x") == "sd1" and family(models(320, 2), "x") == "sdxl"
    with pytest.raises(UnsupportedError, match="no kohya/modelspec names for flux"):
        architecture("flux", "flow_matching")


def test_the_server_the_cards_and_the_sidecars_read_the_table():
    from lorahub.app.work import request_work
    from lorahub.hub.card import FAMILY_BASES, TINY_BASES
    from lorahub.library.sidecars_out import A1111_VERSIONS

    gen = SimpleNamespace(n=1, steps=1, width=None, height=None)
    for f in families.FAMILIES.values():
        assert request_work(gen, f.id) == f.native_size**2 * max(1, f.native_size**2 / 1024**2)
        assert FAMILY_BASES[f.id] == f.reference_base
    assert request_work(gen, None) == 1024 * 1024
    assert TINY_BASES == {
        "tiny": "lorahub/tiny-sd1",
        "tiny-sd1": "lorahub/tiny-sd1",
        "tiny-sdxl": "lorahub/tiny-sdxl",
    }
    assert A1111_VERSIONS == {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}
