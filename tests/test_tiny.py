"""The embedded tiny bases: deterministic, loadable like any model, fast to sample."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lorahub.tiny import build_tiny, ensure_tiny, resolve_base


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_build_is_byte_identical(tiny_sd1, tmp_path):
    again = build_tiny("tiny-sd1", tmp_path / "again")
    assert _digest(again) == _digest(tiny_sd1)


def test_resolve_base_maps_tiny_ids_only(tiny_sd1):
    assert resolve_base("tiny") == str(tiny_sd1)
    assert resolve_base("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"
    with pytest.raises(Exception, match="unknown tiny model"):
        ensure_tiny("tiny-sd9")


def test_tiny_sd1_loads_with_from_pretrained_and_samples(tiny_sd1):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    assert pipe.unet.config.cross_attention_dim == 32
    ids = pipe.tokenizer("a red circle").input_ids
    assert len(set(ids)) > 3, "tokenizer must not map everything to one id"
    image = pipe(
        "a red circle", num_inference_steps=4, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (64, 64)


def test_tiny_sdxl_has_two_text_encoders_and_add_embedding(tiny_sdxl):
    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    assert pipe.unet.config.cross_attention_dim == 96
    assert pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size == 96
    assert pipe.unet.add_embedding is not None
    out = pipe(
        "a blue square",
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert out.images.shape == (1, 64, 64, 3)


def test_example_adapters_load_in_plain_diffusers_and_change_output(tiny_sd1, example_adapters):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)

    def run():
        g = torch.Generator().manual_seed(0)
        return pipe("a red circle", num_inference_steps=3, generator=g, output_type="np").images

    before = run()
    pipe.load_lora_weights(str(example_adapters["example-light"]))
    after = run()
    assert abs(after - before).mean() > 1e-4


# --- the pretrained weights (issue 11) -----------------------------------------------------


def test_shipped_weights_match_their_manifest():
    import json

    from lorahub.tiny import MANIFEST, WEIGHTS_DIR, shipped_weights

    manifest = json.loads((WEIGHTS_DIR / MANIFEST).read_text())
    assert set(manifest["files"]) == {"tiny-sd1.safetensors", "tiny-sdxl.safetensors"}
    total = 0
    for name, entry in manifest["files"].items():
        path = WEIGHTS_DIR / name
        data = path.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
        total += len(data)
        assert shipped_weights(name.removesuffix(".safetensors")) == path
    assert total <= 10 * 1024 * 1024, f"the shipped weights are {total / 2**20:.1f} MB"


def test_a_corrupt_or_missing_weight_file_names_itself_and_the_rebuild(tmp_path, monkeypatch):
    import shutil

    from lorahub import tiny
    from lorahub.errors import InvalidInputError

    copy = tmp_path / "weights"
    shutil.copytree(tiny.WEIGHTS_DIR, copy)
    monkeypatch.setattr(tiny, "WEIGHTS_DIR", copy)
    data = bytearray((copy / "tiny-sd1.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "tiny-sd1.safetensors").write_bytes(bytes(data))
    with pytest.raises(
        InvalidInputError, match=r"tiny-sd1\.safetensors.*corrupt|corrupt.*tiny-sd1"
    ):
        tiny.shipped_weights("tiny-sd1")
    (copy / "tiny-sdxl.safetensors").unlink()
    with pytest.raises(InvalidInputError, match=r"missing.*lorahub\.pretrain"):
        tiny.shipped_weights("tiny-sdxl")


def test_an_older_build_folder_is_never_used(tiny_sd1):
    from lorahub.tiny import BUILD_VERSION

    assert tiny_sd1.name == f"tiny-sd1-v{BUILD_VERSION}" and BUILD_VERSION >= 2


def test_the_recipe_runs_end_to_end_in_smoke_mode(tmp_path, one_thread):
    """A few steps of every stage of `python -m lorahub.pretrain`, and the files it writes
    build a pipeline that loads with from_pretrained."""
    from diffusers import StableDiffusionPipeline

    from lorahub.pretrain import main

    main(["--smoke", "--family", "tiny-sd1", "--out", str(tmp_path / "w")])
    assert (tmp_path / "w" / "MANIFEST.json").is_file()
    folder = build_tiny("tiny-sd1", tmp_path / "pipe", tmp_path / "w" / "tiny-sd1.safetensors")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    assert pipe.vae.config.scaling_factor != 0.18215  # measured by the recipe


@pytest.mark.parametrize(("base", "aims"), [("tiny", (0.9, 0.75)), ("tiny-sdxl", (0.85, 0.7))])
def test_the_base_draws_what_the_prompt_says(base, aims, tiny_sd1, tiny_sdxl, one_thread):
    """The fast variant of benchmarks/draws.py: 12 prompts x 2 seeds at the defaults."""
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.judge import judge
    from lorahub.training.demo import COLOURS, SHAPES, caption

    colour = shape = 0
    with Engine(base=base) as engine:
        for c in COLOURS:
            for s in SHAPES:
                for seed in (0, 1):
                    request = GenerationRequest(caption(c, s), seed=seed)
                    v = judge(engine.generate(request).images[0])
                    colour, shape = colour + (v.colour == c), shape + (v.shape == s)
    assert colour / 24 >= aims[0] and shape / 24 >= aims[1], (colour, shape)


def test_the_base_never_draws_purple(tiny_sd1, one_thread):
    from lorahub.inference import Engine, GenerationRequest
    from lorahub.judge import share_of

    with Engine(base="tiny") as engine:
        images = [
            engine.generate(GenerationRequest(p, seed=s)).images[0]
            for p in ("a purple circle", "a purple square") for s in range(4)
        ]  # fmt: skip
    assert share_of(images, "purple") <= 0.125


def test_shipped_examples_were_trained_on_the_shipped_weights():
    """The demo's trained examples ship beside the weights; their recipe key says which weights,
    recipe and spec made them, so new weights without `python -m lorahub.examples` fail here."""
    import json

    from lorahub.examples import SHIPPED, SHIPPED_SPECS, _shipped_example, recipe_key

    manifest = json.loads((SHIPPED / "MANIFEST.json").read_text())
    assert set(manifest) == {f"tiny-sd1-{spec.name}" for spec in SHIPPED_SPECS}
    for spec in SHIPPED_SPECS:
        key = recipe_key("tiny-sd1", spec)
        assert manifest[f"tiny-sd1-{spec.name}"]["recipe"] == key, "run python -m lorahub.examples"
        assert (
            _shipped_example("tiny-sd1", spec, key) == SHIPPED / f"tiny-sd1-{spec.name}.safetensors"
        )


def test_a_stale_or_damaged_shipped_example_is_not_used(tmp_path, monkeypatch):
    import shutil

    import lorahub.examples as ex

    spec = ex.DEMO_ADAPTERS[0]
    key = ex.recipe_key("tiny-sd1", spec)
    shutil.copytree(ex.SHIPPED, tmp_path / "examples")
    monkeypatch.setattr(ex, "SHIPPED", tmp_path / "examples")
    shipped = tmp_path / "examples" / f"tiny-sd1-{spec.name}.safetensors"
    assert ex._shipped_example("tiny-sd1", spec, key) == shipped
    assert ex._shipped_example("tiny-sd1", spec, "another-recipe") is None
    shipped.write_bytes(shipped.read_bytes()[:-10])  # truncated
    assert ex._shipped_example("tiny-sd1", spec, key) is None
    shipped.unlink()
    assert ex._shipped_example("tiny-sd1", spec, key) is None
    (tmp_path / "examples" / "MANIFEST.json").write_text("{not json")
    assert ex._shipped_example("tiny-sd1", spec, key) is None


def test_an_example_that_is_not_shipped_is_trained_and_cached(tmp_path, monkeypatch):
    from dataclasses import replace

    from safetensors import safe_open

    import lorahub.examples as ex

    monkeypatch.setattr(ex, "SHIPPED", tmp_path / "none")
    spec = replace(ex.DEMO_ADAPTERS[0], steps=2, images=4)
    first = ex.write_example_adapter("tiny", tmp_path / "a.safetensors", spec)
    cached = list((ex.lorahub_cache() / "examples").glob(f"*{ex.recipe_key('tiny-sd1', spec)}*"))
    assert len(cached) == 1 and cached[0].read_bytes() == first.read_bytes()
    with safe_open(str(first), "pt") as fh:
        config = fh.metadata()["lora_adapter_metadata"]
        assert any(k.endswith("lora_A.weight") for k in fh.keys())
    assert '"unet.base_model_name_or_path": null' in config and str(tmp_path) not in config
