"""Pictures in: `mix from-image` (A1111, ComfyUI, lorahub PNGs; A1111 JPEG EXIF) and an adapter's
example images (`images add|list|rm`), with PNGs written the way those tools write them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lorahub.cli import main
from lorahub.library.imagemeta import a1111_recipe, read_recipe
from lorahub.registry import Registry

STYLE, LIGHT = "example-style", "example-light"


@pytest.fixture
def reg(example_adapters):
    r = Registry()
    for name, path in example_adapters.items():
        r.add_adapter(path, name=name)
    yield r
    r.close()


def _cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, result.output
    return result


def _png(path, **texts):
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    Image.new("RGB", (16, 16), (200, 40, 40)).save(path, pnginfo=info)
    return path


def _a1111_text(style_hash):
    # what A1111 1.x writes: tags in the prompt, the file name's hash under "Lora hashes"
    return (
        "a red circle, masterpiece <lora:my_style_v2:0.7> <lora:not-here:0.5>\n"
        "Negative prompt: blurry\n"
        "Steps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, "
        'Size: 64x64, Model hash: 1a2b3c4d5e, Model: tiny, Lora hashes: "my_style_v2: '
        f'{style_hash}, not-here: 0123456789ab", Version: v1.10.1'
    )


def test_a1111_png_resolves_by_hash_and_keeps_the_settings(reg, tmp_path):
    style = reg.get_adapter(STYLE)
    image = _png(tmp_path / "a1111.png", parameters=_a1111_text(style.autov3))
    result = _cli("mix", "from-image", image, "--name", "pic", "--json", ok=False)
    report = json.loads(result.stdout)
    assert [m["name"] for m in report["missing"]] == ["not-here"] and report["mix"] is None
    assert "not registered: not-here (0123456789ab)" in result.output
    with pytest.raises(Exception, match="no mix"):
        reg.get_mix("pic")
    report = json.loads(
        _cli("mix", "from-image", image, "--name", "pic", "--allow-missing", "--json").stdout
    )
    (found,) = report["found"]
    assert (found["adapter"], found["by"], found["weight"]) == (STYLE, "hash", 0.7)
    mix = reg.get_mix("pic")
    assert [(m.ref, m.weight) for m in mix.members] == [(STYLE, 0.7)]
    assert mix.defaults == {
        "prompt": "a red circle, masterpiece", "negative_prompt": "blurry", "seed": 1234,
        "steps": 12, "guidance": 6.5, "sampler": "DPM++ 2M", "width": 64, "height": 64,
        "image": "a1111.png", "tool": "a1111",
    }  # fmt: skip


def test_comfyui_png_resolves_by_name(reg, tmp_path):
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 77, "steps": 9, "cfg": 4.0,
              "sampler_name": "euler", "positive": ["6", 0], "negative": ["7", 0], "model": ["11", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue square", "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["10", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "sub\\example-light.safetensors",
               "strength_model": 0.4, "strength_clip": 0.2, "model": ["4", 0], "clip": ["4", 1]}},
        "11": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "example-style.safetensors",
               "strength_model": 0.9, "model": ["10", 0]}},
    }  # fmt: skip
    image = _png(tmp_path / "comfy.png", prompt=json.dumps(graph), workflow="{}")
    _cli("mix", "from-image", image, "--name", "comfy")
    mix = reg.get_mix("comfy")
    assert sorted((m.ref, m.weight, m.te_weight) for m in mix.members) == [
        (LIGHT, 0.4, 0.2), (STYLE, 0.9, 0.0)
    ]  # fmt: skip
    assert mix.defaults["prompt"] == "a blue square" and mix.defaults["seed"] == 77


def test_generated_png_round_trips_to_the_same_mix(reg, tmp_path):
    _cli("mix", "create", "duo", f"{STYLE}:0.7", f"{LIGHT}:unet=0.4,te=0.2")
    out = tmp_path / "gen.png"
    _cli("generate", "a red circle", "--mix", "duo", "--steps", "2", "--seed", "5", "-o", out)
    _cli("mix", "from-image", out, "--name", "duo-again")
    again, duo = reg.get_mix("duo-again"), reg.get_mix("duo")
    assert [(m.ref, m.weight, m.te_weight) for m in again.members] == [
        (m.ref, m.weight, m.te_weight) for m in duo.members
    ]
    assert again.defaults["seed"] == 5 and again.defaults["steps"] == 2
    assert again.defaults["tool"] == "lorahub"


def test_a1111_jpeg_exif_comment_is_read(tmp_path):
    text = _a1111_text("abcdef012345")
    img = Image.new("RGB", (16, 16))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    img.save(tmp_path / "civitai.jpg", exif=exif)
    recipe = read_recipe(tmp_path / "civitai.jpg")
    assert recipe is not None and recipe.tool == "a1111"
    assert [(m.name, m.hash) for m in recipe.members][0] == ("my_style_v2", "abcdef012345")


def test_bad_images_are_one_line(reg, tmp_path):
    plain = _png(tmp_path / "plain.png")
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    no_lora = _png(tmp_path / "nolora.png", parameters="a cat\nSteps: 4, Seed: 1, Size: 8x8")
    for image, message in ((plain, "no generation parameters"), (tmp_path / "fake.png", "not a readable image"),
                           (no_lora, "without LoRAs")):  # fmt: skip
        result = _cli("mix", "from-image", image, "--name", "x", ok=False)
        assert message in result.output and "Traceback" not in result.output
    assert a1111_recipe("") is None


def test_example_images_add_list_rm(reg, tmp_path):
    first = _png(tmp_path / "one.png", parameters=_a1111_text("00"))
    second = _png(tmp_path / "two.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(second)
    listed = json.loads(_cli("images", "add", STYLE, first, second, first, "--json").stdout)
    assert [i["position"] for i in listed] == [0, 1]  # the same picture twice is one example
    assert listed[0]["tool"] == "a1111" and listed[0]["params"]["seed"] == 1234
    assert listed[1]["params"] is None
    assert reg.get_adapter(STYLE).preview == listed[0]["file"]  # the first is the preview
    assert json.loads(_cli("images", "list", STYLE, "--json").stdout) == listed
    _cli("images", "rm", STYLE, "0")
    assert reg.get_adapter(STYLE).preview == listed[1]["file"]
    (tmp_path / "bad.png").write_text("text")
    result = _cli("images", "add", STYLE, second, tmp_path / "bad.png", ok=False)
    assert "not a readable image" in result.output
    assert len(reg.images(STYLE)) == 1  # nothing of the failed call was recorded
    assert "no image" in _cli("images", "rm", STYLE, "7", ok=False).output


def test_bulk_tag_and_untag_where(reg):
    reg.tag(LIGHT, ["keep"])
    dry = json.loads(
        _cli("tag", "--where", "base=tiny-sd1 q=example", "fav", "--dry-run", "--json").stdout
    )
    assert sorted(c["ref"] for c in dry) == [LIGHT, STYLE]
    assert "fav" not in reg.get_adapter(STYLE).tags  # a dry run changes nothing
    _cli("tag", "--where", "base=tiny-sd1", "fav", "more")
    assert {"fav", "more"} <= set(reg.get_adapter(STYLE).tags)
    changed = json.loads(_cli("untag", "--where", "tag=keep", "fav", "--json").stdout)
    assert [(c["ref"], c["after"]) for c in changed] == [(LIGHT, ["keep", "more"])]
    assert "fav" in reg.get_adapter(STYLE).tags
    for args, message in ((["--where", "colour=red", "x"], "KEY=VALUE"),
                          (["--where", "min-rank=big", "x"], "whole number"),
                          (["only-ref"], "give REF and at least one tag")):  # fmt: skip
        assert message in _cli("tag", *args, ok=False).output
