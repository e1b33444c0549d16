"""Example images and mixes from a dropped image, in headless Chromium against a real `lorahub serve`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_web import assert_nothing_injected, open_page
from tests.web_browser import (
    WebServer,
    chromium,
    css,
    patched_env,
    register_examples,
    require_browser,
    run_server,
    wait,
)

EVIL_PROMPT = '<img src=x onerror="window.__xss=9"> a tower'


def a1111_text(prompt: str, loras: list[tuple[str, float, str]], seed: int) -> str:
    """A1111's `parameters`: `<lora:NAME:W>` in the prompt, the hashes under `Lora hashes`."""
    tags = "".join(f" <lora:{name}:{weight}>" for name, weight, _ in loras)
    hashes = ", ".join(f"{name}: {h}" for name, _, h in loras)
    return (
        f"{prompt}{tags}\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7, "
        f'Seed: {seed}, Size: 64x64, Model hash: 1a2b3c4d5e, Lora hashes: "{hashes}", Version: v1.10.1'
    )


def write_png(path: Path, colour: tuple[int, int, int], parameters: str | None = None) -> Path:
    """A 64x64 PNG, with A1111's `parameters` text chunk when given."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    Image.new("RGB", (64, 64), colour).save(path, pnginfo=info)
    return path


def lorahub_png(path: Path, adapters: list[dict[str, Any]]) -> Path:
    """A PNG as `lorahub generate` writes it (its own record, plus A1111's text)."""
    from PIL import Image

    from lorahub.inference.png import png_bytes

    record = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "",
        "seed": 5,
        "seeds": [5],
        "steps": 3,
        "guidance": 7.5,
        "width": 64,
        "height": 64,
        "base": "tiny",
        "scheduler": "euler",
        "adapters": adapters,
    }
    path.write_bytes(png_bytes(Image.new("RGB", (64, 64), (20, 40, 90)), record))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """Two adapters; pixel-art has three example images (A1111, none, markup in the prompt)."""
    require_browser()
    from lorahub.examples import ExampleAdapter
    from lorahub.registry import Registry

    home = tmp_path_factory.mktemp("web-images-home")
    files = tmp_path_factory.mktemp("web-images-files")
    register_examples(
        home,
        files,
        [
            (
                ExampleAdapter("watercolor", 4, 4.0, 1, False, "Soft washes.", ("watercolor",)),
                ["style"],
            ),
            (
                ExampleAdapter("pixel-art", 4, 8.0, 3, False, "Chunky pixels.", ("pixelart",)),
                ["style"],
            ),
        ],
    )
    images = [
        write_png(files / "one.png", (200, 40, 40), a1111_text("a red tower", [], 1234)),
        write_png(files / "two.png", (40, 200, 40)),
        write_png(files / "three.png", (40, 40, 200), a1111_text(EVIL_PROMPT, [], 7)),
    ]
    with patched_env(LORAHUB_HOME=str(home)), Registry() as registry:
        registry.add_images("pixel-art", images)
    with run_server(home) as running:
        yield running


@pytest.fixture(scope="module")
def browser(server: WebServer) -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def test_example_images_on_the_card_and_the_adapter_page(server: WebServer, browser: Any) -> None:
    open_page(browser, server)
    card = '#gallery li[data-ref="pixel-art"]'
    wait(browser, lambda d: len(css(d, f"{card} .strip img.example-img")) == 3)
    alts = [i.get_attribute("alt") for i in css(browser, f"{card} .strip img")]
    assert alts == [f"Example {i} of pixel-art" for i in (1, 2, 3)]
    assert css(browser, f"{card} .strip")[0].get_attribute("aria-label") == "3 example images"
    wait(browser, lambda d: css(d, f"{card} .thumb img.preview"))  # the first image is the preview
    assert not css(browser, '#gallery li[data-ref="watercolor"] .strip')
    open_page(browser, server, "#/adapter/pixel-art")
    shown = wait(
        browser,
        lambda d: (
            len(css(d, "#adapter-images li.example img")) == 3 and css(d, "#adapter-images img")
        ),
    )
    wait(
        browser,
        lambda d: all(d.execute_script("return arguments[0].naturalWidth", i) == 64 for i in shown),
    )
    captions = [c.text for c in css(browser, "#adapter-images figcaption")]
    assert "a red tower" in captions[0] and "1234" in captions[0] and "Euler a" in captions[0]
    assert "64×64" in captions[0] and "a1111" in captions[0]
    assert captions[1] == "No generation parameters in this image."
    assert EVIL_PROMPT in captions[2]  # markup from an image's text is shown as text
    assert_nothing_injected(browser)


def drop(driver: Any, path: Path) -> None:
    """Drop a file on the composer's drop zone, as a browser does (a DataTransfer in a drop event)."""
    script = """
      const [b64, name] = arguments;
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], name, { type: "image/png" }));
      const zone = document.getElementById("drop-zone");
      for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
      }
    """
    driver.execute_script(script, base64.b64encode(path.read_bytes()).decode(), path.name)


def composer_refs(driver: Any) -> list[str]:
    return [li.get_attribute("data-ref") for li in css(driver, "#mix-members li.member")]


def test_chosen_image_with_a_missing_lora_saves_only_when_allowed(
    server: WebServer, browser: Any, tmp_path: Path
) -> None:
    autov3 = server.get("/v1/adapters/watercolor")["adapter"]["autov3"]
    loras = [("wc_v1", 0.6, autov3), ("ghost", 0.4, "0123456789ab")]
    png = write_png(tmp_path / "castle.png", (90, 90, 90), a1111_text("a castle", loras, 77))
    open_page(browser, server, "#/mix")
    wait(browser, lambda d: css(d, "#from-image-file"))[0].send_keys(str(png))  # the keyboard way
    wait(browser, lambda d: css(d, '#from-image-members li.missing[data-name="ghost"]'))
    found = css(browser, '#from-image-members li.found[data-ref="watercolor"]')[0]
    assert "wc_v1 × 0.6" in found.text and "by hash" in found.text
    assert css(browser, "#from-image-name")[0].get_attribute("value") == "castle"
    css(browser, "#from-image-save")[0].click()
    message = css(browser, "#from-image-message")[0]
    wait(browser, lambda d: "nothing saved" in message.text)
    assert "ghost (0123456789ab)" in message.text
    assert "castle" not in [m["name"] for m in server.cli("mix", "list")]
    css(browser, "#from-image-allow")[0].click()
    css(browser, "#from-image-save")[0].click()
    wait(browser, lambda d: css(d, '#mix-list li[data-mix="castle"]'))
    assert composer_refs(browser) == ["watercolor"]
    assert css(browser, "#mix-prompt")[0].get_attribute("value") == "a castle"
    [web] = [m for m in server.cli("mix", "list") if m["name"] == "castle"]
    cli = server.cli("mix", "from-image", str(png), "--name", "castle-cli", "--allow-missing")[
        "mix"
    ]
    for key in ("members", "defaults", "description"):  # the same library call as the CLI
        assert web[key] == cli[key], key
    assert web["defaults"]["seed"] == 77 and web["members"][0]["weight"] == 0.6


def test_dropped_lorahub_image_becomes_a_mix(
    server: WebServer, browser: Any, tmp_path: Path
) -> None:
    hashes = {
        r: server.get(f"/v1/adapters/{r}")["adapter"]["autov3"] for r in ("watercolor", "pixel-art")
    }
    adapters = [
        {"name": "watercolor", "weight": 0.8, "hash": hashes["watercolor"]},
        {"name": "renamed-pixels", "weight": 0.3, "hash": hashes["pixel-art"]},
    ]
    png = lorahub_png(tmp_path / "lighthouse.png", adapters)
    open_page(browser, server, "#/mix")
    wait(browser, lambda d: css(d, "#drop-zone"))
    drop(browser, png)
    wait(browser, lambda d: len(css(d, "#from-image-members li.found")) == 2)
    assert not css(browser, "#from-image-members li.missing")
    assert css(browser, "#from-image-name")[0].get_attribute("value") == "lighthouse"
    css(browser, "#from-image-save")[0].click()
    wait(browser, lambda d: css(d, '#mix-list li[data-mix="lighthouse"]'))
    assert composer_refs(browser) == ["watercolor", "pixel-art"]
    [mix] = [m for m in server.cli("mix", "list") if m["name"] == "lighthouse"]
    assert [(m["ref"], m["weight"]) for m in mix["members"]] == [
        ("watercolor", 0.8),
        ("pixel-art", 0.3),
    ]
    assert (
        mix["defaults"]["prompt"] == "a lighthouse at dusk" and mix["defaults"]["tool"] == "lorahub"
    )
