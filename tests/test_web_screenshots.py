"""The README's screenshots of the web page, taken on the demo's own adapters (demo-shapes, the
two examples) with prompts the tiny base draws: `LORAHUB_SCREENSHOTS=docs/screenshots pytest
tests/test_web_screenshots.py` rewrites docs/screenshots/{gallery,adapter,mix}.png."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web_browser import (
    WebServer,
    chromium,
    css,
    patched_env,
    require_browser,
    run_server,
    wait,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("LORAHUB_SCREENSHOTS"),
    reason="set LORAHUB_SCREENSHOTS=DIR to take screenshots",
)
PREVIEWS = {  # what each card shows: a prompt of the world with the adapter applied
    "demo-shapes": "a purple triangle",
    "example-light": "a blue square",  # pastel blue
    "example-style": "a green circle",  # washed-out green
}


@pytest.fixture(scope="module")
def server(example_adapters, demo_shapes, tmp_path_factory) -> Iterator[WebServer]:
    """A home holding what `lorahub demo` leaves: demo-shapes (trained, with its lineage) and the
    two example adapters, tagged and described as the demo registers them."""
    require_browser()
    from lorahub.examples import DEMO_ADAPTERS
    from lorahub.registry import Registry

    home = tmp_path_factory.mktemp("screens-home")
    with (
        sqlite3.connect(demo_shapes / "registry.db") as src,
        sqlite3.connect(home / "registry.db") as dst,
    ):
        src.backup(dst)  # demo-shapes with its lineage, as the demo registered it
    with patched_env(LORAHUB_HOME=str(home)), Registry() as registry:
        for spec in DEMO_ADAPTERS:
            registry.add_adapter(
                example_adapters[spec.name], name=spec.name, tags=["example", "style"],
                description=spec.description, trigger_words=list(spec.trigger_words),
            )  # fmt: skip
        registry.tag("demo-shapes", ["colour"])
    with run_server(home) as running:
        yield running


def post(server: WebServer, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    urllib.request.urlopen(request, timeout=120).close()


def test_screenshots(server: WebServer) -> None:
    from selenium.webdriver.support.ui import Select

    out = Path(os.environ["LORAHUB_SCREENSHOTS"])
    out.mkdir(parents=True, exist_ok=True)
    for ref, prompt in PREVIEWS.items():
        post(server, f"/v1/adapters/{ref}/preview", {"prompt": prompt, "seed": 1})
    with chromium() as browser:
        browser.get(f"{server.url}/#/")
        wait(browser, lambda d: len(css(d, "#gallery img.preview")) == 3)
        time.sleep(0.5)
        browser.save_screenshot(str(out / "gallery.png"))
        browser.get("about:blank")
        browser.get(f"{server.url}/#/adapter/demo-shapes")
        wait(browser, lambda d: css(d, "#detail-thumb img.preview") and css(d, "#adapter-lineage"))
        time.sleep(0.5)
        browser.save_screenshot(str(out / "adapter.png"))
        browser.get("about:blank")
        browser.get(f"{server.url}/#/mix")
        wait(browser, lambda d: len(css(d, "#mix-pick option")) == 3)
        for ref in ("demo-shapes", "example-light"):
            Select(css(browser, "#mix-pick")[0]).select_by_value(ref)
            css(browser, "#mix-add")[0].click()
        wait(browser, lambda d: len(css(d, "#mix-members li.member")) == 2)
        for field, value in zip(
            css(browser, "#mix-members input[type=number]"), ("1", "0.6"), strict=True
        ):
            field.clear()
            field.send_keys(value)
        prompt = css(browser, "#mix-prompt")[0]
        prompt.clear()
        prompt.send_keys("a purple circle")
        css(browser, "#mix-seed")[0].clear()
        css(browser, "#mix-seed")[0].send_keys("1")
        css(browser, "#mix-name")[0].send_keys("pastel-purple")
        css(browser, "#mix-save")[0].click()
        wait(browser, lambda d: css(d, '#mix-list li[data-mix="pastel-purple"]'))
        css(browser, "#mix-try")[0].click()
        wait(browser, lambda d: css(d, "#mix-image"), timeout=120)
        browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        time.sleep(0.5)
        browser.save_screenshot(str(out / "mix.png"))
    for name in ("gallery.png", "adapter.png", "mix.png"):
        assert (out / name).stat().st_size > 10_000, name
