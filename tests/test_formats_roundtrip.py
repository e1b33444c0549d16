"""Formats built from the tiny models' real module names; round trips; loading in plain diffusers."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from lorahub.formats import ModuleWeights, inspect_file, open_adapter, write_adapter
from lorahub.formats.analyze import analyze
from lorahub.tiny import ensure_tiny

ATTN = ("to_q", "to_k", "to_v", "to_out.0")


@pytest.fixture(scope="module")
def sd1():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(ensure_tiny("tiny"))


@pytest.fixture(scope="module")
def sdxl():
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(ensure_tiny("tiny-sdxl"))


def _layers(model, prefix, leaves):
    """(canonical name, layer) for every Linear/Conv2d whose name ends with one of `leaves`."""
    from lorahub.formats.layout import canonical_te_path

    return [
        (canonical_te_path(f"{prefix}.{n}"), m)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear | torch.nn.Conv2d) and n.endswith(leaves)
    ]


def _lora(layer, rank=4, alpha=None, gen=None):
    w = layer.weight
    if w.dim() == 4:
        down = torch.randn(rank, w.shape[1], *w.shape[2:], generator=gen) * 0.1
        up = torch.randn(w.shape[0], rank, 1, 1, generator=gen) * 0.1
    else:
        down = torch.randn(rank, w.shape[1], generator=gen) * 0.1
        up = torch.randn(w.shape[0], rank, generator=gen) * 0.1
    return ModuleWeights(kind="lora", down=down, up=up, alpha=alpha)


def _modules(pipe, te_leaves=("q_proj", "v_proj"), sdxl=False, vary_alpha=True):
    gen = torch.Generator().manual_seed(0)
    layers = _layers(pipe.unet, "unet", ATTN) + _layers(
        pipe.text_encoder, "text_encoder", te_leaves
    )
    if sdxl:
        layers += _layers(pipe.text_encoder_2, "text_encoder_2", te_leaves)
    # alpha differs from rank, and one module differs from the rest (alpha_pattern)
    return [
        (n, _lora(layer, alpha=8.0 if i == 0 and vary_alpha else 2.0, gen=gen))
        for i, (n, layer) in enumerate(layers)
    ]


def _apply(pipe, modules):
    """A copy of the pipeline's models with ΔW added by hand."""
    models = {
        c: copy.deepcopy(getattr(pipe, c))
        for c in ("unet", "text_encoder", "text_encoder_2")
        if getattr(pipe, c, None) is not None
    }
    from types import SimpleNamespace

    from lorahub.formats.modules import find_layer

    for name, m in modules:
        layer = find_layer(SimpleNamespace(**models), name)
        with torch.no_grad():
            layer.weight += m.delta_weight().reshape(layer.weight.shape)
    return models


def _unet_out(unet, cross):
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 8, 8, generator=gen)
    ctx = torch.randn(1, 7, cross, generator=gen)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, 32, generator=gen),
            "time_ids": torch.randn(1, 6, generator=gen),
        }
    with torch.no_grad():
        return unet(sample, 10, encoder_hidden_states=ctx, **kwargs).sample


def _te_out(te):
    with torch.no_grad():
        return te(torch.tensor([[0, 5, 9, 40, 1]])).last_hidden_state


def _check_loads_in_diffusers(pipe_cls, folder, path, modules, cross):
    pipe = pipe_cls.from_pretrained(folder)
    manual = _apply(pipe, modules)
    pipe.load_lora_weights(str(path))
    assert torch.allclose(_unet_out(pipe.unet, cross), _unet_out(manual["unet"], cross), atol=1e-4)
    assert not torch.allclose(
        _unet_out(manual["unet"], cross),
        _unet_out(pipe_cls.from_pretrained(folder).unet, cross),
        atol=1e-3,
    )
    for comp in ("text_encoder", "text_encoder_2"):
        if comp in manual:
            assert torch.allclose(_te_out(getattr(pipe, comp)), _te_out(manual[comp]), atol=1e-4), (
                comp
            )


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_written_file_loads_in_plain_diffusers(sd1, tmp_path, fmt):
    from diffusers import StableDiffusionPipeline

    # diffusers' kohya loader mis-keys per-module alphas of the UNet and needs to_out in the text
    # encoder (as real kohya files have), so the kohya case uses one alpha and all four projections
    kohya = fmt == "kohya"
    te = ("q_proj", "k_proj", "v_proj", "out_proj") if kohya else ("q_proj", "v_proj")
    modules = _modules(sd1, te_leaves=te, vary_alpha=not kohya)
    path = write_adapter(
        modules, tmp_path / f"{fmt}.safetensors", format=fmt, base_family="tiny-sd1"
    )
    info = inspect_file(path)
    assert (info.format, info.base_family, info.module_count, info.alpha) == (
        fmt,
        "tiny-sd1",
        len(modules),
        2.0,
    )
    _check_loads_in_diffusers(StableDiffusionPipeline, ensure_tiny("tiny"), path, modules, 32)


def test_sdxl_kohya_sgm_names_load_in_diffusers(sdxl, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    modules = _modules(
        sdxl, te_leaves=("q_proj", "k_proj", "v_proj", "out_proj"), sdxl=True, vary_alpha=False
    )
    extra = _layers(
        sdxl.unet,
        "unet",
        ("conv1", "conv2", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv"),
    )
    modules += [(n, _lora(layer, rank=4, alpha=2.0)) for n, layer in extra]
    path = write_adapter(
        modules, tmp_path / "xl.safetensors", format="kohya", base_family="tiny-sdxl"
    )
    keys = list(analyze(path).header)
    assert any(k.startswith("lora_unet_input_blocks_") for k in keys) and any(
        k.startswith("lora_unet_output_blocks_1_2_conv") for k in keys
    )
    assert any(k.startswith("lora_te1_") for k in keys) and any(
        k.startswith("lora_te2_") for k in keys
    )
    info = inspect_file(path)
    assert (info.format, info.network_type, info.base_family) == ("kohya", "locon", "tiny-sdxl")
    assert info.components == ["unet", "text_encoder", "text_encoder_2"]
    assert set(analyze(path).layout.modules) == {
        n for n, _ in modules
    }  # SGM names map back to diffusers names
    _check_loads_in_diffusers(
        StableDiffusionXLPipeline, ensure_tiny("tiny-sdxl"), path, modules, 96
    )


def _deltas(path):
    with open_adapter(path) as r:
        return {n: m.delta_weight() for n, m in r.modules()}


@pytest.mark.parametrize("fmt", ["diffusers", "kohya", "peft"])
def test_round_trip_keeps_delta_weights(sd1, tmp_path, fmt):
    modules = _modules(sd1) + [
        (n, _lora(layer, rank=3, alpha=1.5)) for n, layer in _layers(sd1.unet, "unet", ("conv1",))
    ]
    if fmt == "peft":
        modules = [(n, m) for n, m in modules if n.startswith("unet.")]
    path = write_adapter(
        modules, tmp_path / ("peft_dir" if fmt == "peft" else f"a.{fmt}.safetensors"), format=fmt
    )
    got = _deltas(path)
    assert set(got) == {n for n, _ in modules}
    for name, m in modules:
        assert torch.allclose(got[name], m.delta_weight(), atol=1e-6), name
    assert inspect_file(path).network_type == "locon"


def _kohya_file(path, tensors, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata or {})
    return path


def _kohya_name(canonical):
    component, _, p = canonical.partition(".")
    return {"unet": "lora_unet_", "text_encoder": "lora_te_"}[component] + p.replace(".", "_")


def test_kohya_names_match_diffusers_modules(sd1, tmp_path):
    """Names built the way kohya builds them ('.' -> '_') normalise back to the diffusers names."""
    layers = _layers(
        sd1.unet,
        "unet",
        ATTN
        + (
            "proj_in",
            "proj_out",
            "ff.net.0.proj",
            "ff.net.2",
            "conv1",
            "conv2",
            "conv_shortcut",
            "time_emb_proj",
            "downsamplers.0.conv",
            "upsamplers.0.conv",
        ),
    )
    layers += _layers(
        sd1.text_encoder, "text_encoder", ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
    )
    tensors = {}
    for name, layer in layers:
        m = _lora(layer, rank=2)
        tensors |= {
            f"{_kohya_name(name)}.lora_down.weight": m.down,
            f"{_kohya_name(name)}.lora_up.weight": m.up,
            f"{_kohya_name(name)}.alpha": torch.tensor(1.0),
        }
    path = _kohya_file(tmp_path / "k.safetensors", tensors, {"ss_base_model_version": "sd_v1"})
    assert set(analyze(path).layout.modules) == {n for n, _ in layers}
    info = inspect_file(path)
    assert (info.format, info.network_type, info.base_family, info.alpha, info.rank) == (
        "kohya",
        "locon",
        "tiny-sd1",
        1.0,
        2,
    )
    assert (
        info.base_conflict and "sd1" in info.base_conflict
    )  # metadata claims SD1, shapes say tiny-sd1


def test_dora_and_loha(sd1, tmp_path):
    gen = torch.Generator().manual_seed(3)
    (name, layer), *_ = _layers(sd1.unet, "unet", ("attn2.to_k",))
    k = _kohya_name(name)
    out_f, in_f = layer.weight.shape
    m = _lora(layer, rank=2, gen=gen)
    dora = {
        f"{k}.lora_down.weight": m.down,
        f"{k}.lora_up.weight": m.up,
        f"{k}.alpha": torch.tensor(1.0),
        f"{k}.dora_scale": torch.rand(1, in_f, generator=gen) + 0.5,
    }
    info = inspect_file(_kohya_file(tmp_path / "dora.safetensors", dora))
    assert (info.network_type, info.format) == ("dora", "kohya")
    w = open_adapter(tmp_path / "dora.safetensors").module(name)
    base = layer.weight.detach()
    merged = base + w.delta_weight(base)
    assert torch.allclose(
        merged.norm(dim=0), dora[f"{k}.dora_scale"][0], atol=1e-5
    )  # column norms = magnitude
    f = [torch.randn(s, generator=gen) for s in ((out_f, 2), (2, in_f), (out_f, 2), (2, in_f))]
    loha = dict(
        zip(
            [f"{k}.hada_w1_a", f"{k}.hada_w1_b", f"{k}.hada_w2_a", f"{k}.hada_w2_b"], f, strict=True
        )
    ) | {f"{k}.alpha": torch.tensor(1.0)}
    info = inspect_file(_kohya_file(tmp_path / "loha.safetensors", loha))
    assert (info.format, info.network_type, info.rank, info.base_family) == (
        "lycoris",
        "loha",
        2,
        "tiny-sd1",
    )
    got = open_adapter(tmp_path / "loha.safetensors").module(name).delta_weight()
    assert torch.allclose(got, (f[0] @ f[1]) * (f[2] @ f[3]) * 0.5, atol=1e-5)


def test_lokr_fixture_delta_is_kronecker(fixtures_dir):
    path = fixtures_dir / "sd1x_lycoris-lokr_dim4_smart-falcon.safetensors"
    with open_adapter(path) as r:
        m = r.module("unet.down_blocks.0.resnets.0.conv1")
        expected = torch.kron(
            m.lokr_w1_a.float() @ m.lokr_w1_b.float(), m.lokr_w2_a.float() @ m.lokr_w2_b.float()
        )
        assert m.kind == "lokr" and m.scale == 1.0
        assert torch.allclose(m.delta_weight().flatten(1), expected) and m.delta_weight().shape == (
            320,
            320,
            3,
            3,
        )


def test_spectrum_matches_full_svd(sd1, tmp_path):
    from lorahub.formats import spectrum
    from lorahub.formats.spectra import singular_values

    modules = _modules(sd1)[:3]
    path = write_adapter(modules, tmp_path / "s.safetensors")
    spec = spectrum(path)
    for name, m in modules:
        full = torch.linalg.svdvals(m.delta_weight())[:4]
        assert torch.allclose(singular_values(m), full, rtol=1e-4, atol=1e-6)
        assert spec["modules"][name]["effective_rank_99"] <= 4


def test_cloneofsimo_open_refused_with_reason(fixtures_dir):
    from lorahub.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="positional"):
        open_adapter(fixtures_dir / "sd15_cloneofsimo_r4_analog-svd.safetensors")


def test_text_encoder_names_are_canonical_whatever_transformers_wrote(example_adapters, tmp_path):
    """Files saved under transformers 5 lack CLIP's `text_model.` level; A1111 names need it."""
    from safetensors import safe_open

    from lorahub.formats import open_adapter, write_adapter

    with open_adapter(example_adapters["example-light"]) as reader:
        names = reader.module_names()
        assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj" in names
        write_adapter(reader.modules(), tmp_path / "k.safetensors", format="kohya")
    with safe_open(str(tmp_path / "k.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in keys
