"""What we push loads in plain diffusers from the (local) Hub: `load_lora_weights(repo_id)`."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorahub.app.hub import push_adapter
from lorahub.registry import Registry
from tests.hub_fixtures import use_lfs
from tests.hub_server import HubServer


@pytest.fixture(scope="module")
def pipe(tiny_sd1: Path):
    """The tiny SD1 pipeline, loaded once for the module (adapters unloaded after each use)."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sample(pipe, source: str, **kwargs) -> object:
    """One seeded 3-step sample with `source` loaded as a LoRA (then unloaded)."""
    import torch

    pipe.load_lora_weights(source, **kwargs)
    try:
        g = torch.Generator().manual_seed(0)
        return pipe("a red circle", num_inference_steps=3, generator=g, output_type="np").images
    finally:
        pipe.unload_lora_weights()


def base_sample(pipe) -> object:
    import torch

    g = torch.Generator().manual_seed(0)
    return pipe("a red circle", num_inference_steps=3, generator=g, output_type="np").images


def test_load_lora_weights_from_repo_equals_local_file(
    hub: HubServer, hub_repo_id: str, pipe, example_adapters
) -> None:
    local = example_adapters["example-light"]  # UNet + text encoder
    reg = Registry()
    reg.add_adapter(local, name="light")
    push_adapter("light", hub_repo_id, registry=reg, also=["kohya"])
    from_hub = sample(
        pipe, hub_repo_id
    )  # no weight_name: diffusers picks pytorch_lora_weights.safetensors
    assert abs(from_hub - sample(pipe, str(local))).max() == 0
    assert abs(from_hub - base_sample(pipe)).mean() > 1e-4
    kohya = sample(pipe, hub_repo_id, weight_name="light.safetensors")
    assert abs(kohya - from_hub).max() < 1e-4


def test_pushed_kohya_adapter_loads_from_repo_like_the_kohya_file(
    hub: HubServer,
    hub_repo_id: str,
    pipe,
    example_adapters,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lorahub.formats import open_adapter, write_adapter

    use_lfs(hub, monkeypatch)
    kohya = tmp_path / "light_kohya.safetensors"
    with open_adapter(example_adapters["example-light"]) as reader:
        write_adapter(reader.modules(), kohya, format="kohya", base_family="tiny-sd1")
    reg = Registry()
    reg.add_adapter(kohya, name="light")
    push_adapter("light", hub_repo_id, registry=reg)
    from_hub = sample(pipe, hub_repo_id)
    assert abs(from_hub - sample(pipe, str(kohya))).max() < 1e-4
    assert abs(from_hub - base_sample(pipe)).mean() > 1e-4


def test_recipe_card_snippet_loads_the_members_like_the_baked_mix(
    hub: HubServer, hub_repo_id: str, pipe, example_adapters
) -> None:
    """The recipe card's diffusers code, run as written (base pipeline swapped in), equals the baked mix."""
    import re
    from types import SimpleNamespace

    import torch

    from lorahub.types import MixMember

    reg = Registry()
    reg.add_adapter(example_adapters["example-style"], name="style", trigger_words=["stylized"])
    reg.add_adapter(example_adapters["example-light"], name="light", trigger_words=["glow"])
    reg.create_mix("duo", [MixMember("style", 0.7), MixMember("light", 0.4, te_weight=0.2)])
    push_adapter("style", f"{hub_repo_id}-style", registry=reg)
    push_adapter("light", f"{hub_repo_id}-light", registry=reg)
    card = push_adapter("duo", hub_repo_id, registry=reg, recipe=True).card
    assert "instance_prompt: stylized, glow" in card
    code = re.search(r"```py\n(.*?)```", card, re.S).group(1)  # type: ignore[union-attr]
    code = re.sub(r"pipe = .*\n", "", code).replace('pipe("stylized, glow")', "run()")
    baked = push_adapter("duo", f"{hub_repo_id}-baked", registry=reg)
    assert baked.changed

    def run() -> object:
        g = torch.Generator().manual_seed(0)
        out = pipe("a red circle", num_inference_steps=3, generator=g, output_type="np")
        return SimpleNamespace(images=[out.images])

    code = code.replace("from diffusers import AutoPipelineForText2Image\n", "")
    scope = {"pipe": pipe, "run": run, "torch": torch}
    try:
        exec(compile(code, "card", "exec"), scope)  # noqa: S102 - the card's own snippet
    finally:
        pipe.unload_lora_weights()
    from_recipe = scope["image"]
    assert abs(from_recipe - sample(pipe, f"{hub_repo_id}-baked")).max() < 1e-4
    assert abs(from_recipe - base_sample(pipe)).mean() > 1e-4
