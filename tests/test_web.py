"""The web page in headless Chromium against one real `lorahub serve` (tiny base) for the module."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web_browser import (
    WebServer,
    add_metadata,
    card_names,
    chromium,
    css,
    patched_env,
    register_examples,
    require_browser,
    run_server,
    wait,
)

EVIL_TRIGGERS = '<script>window.__xss=1</script>, <img src=x onerror="alert(2)">'
EVIL_DESCRIPTION = "<b>bold</b><script>window.__xss=3</script><img src=x onerror=alert(4)>"
EVIL_DETAIL = "<img src=x onerror=alert(6)>"
EVIL_MIX = "<script>window.__xss=5</script>dusk"
EVIL_TAG = "<img/src=x/onerror=window.__xss=7>"  # a valid tag: no spaces, no commas
PROMPT = "a castle on a hill"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """Four adapters (one with a trained-with preview, one with markup in its metadata) and a server.

    pixel-art has lineage and a publication; `evil` has markup in its file's metadata, in a
    lineage edge's details and in the description of a mix that uses it.
    """
    require_browser()
    from lorahub.examples import ExampleAdapter, write_example_adapter
    from lorahub.registry import Registry
    from lorahub.types import MixMember

    home = tmp_path_factory.mktemp("web-home")
    files = tmp_path_factory.mktemp("web-files")
    register_examples(home, files, [
        (ExampleAdapter("watercolor", 4, 4.0, 1, False, "Soft washes.", ("watercolor",)), ["style", "paint"]),
        (ExampleAdapter("neon-light", 8, 4.0, 2, True, "Neon rim light.", ("neon",)), ["lighting"]),
        (ExampleAdapter("pixel-art", 4, 8.0, 3, False, "Chunky pixels.", ("pixelart",)), ["style"]),
    ])  # fmt: skip
    evil = write_example_adapter(
        "tiny", files / "evil.safetensors", ExampleAdapter("evil", 4, 4.0, 4)
    )
    add_metadata(
        evil, {"modelspec.trigger_phrase": EVIL_TRIGGERS, "modelspec.description": EVIL_DESCRIPTION}
    )
    with patched_env(LORAHUB_HOME=str(home)), Registry() as registry:
        registry.add_adapter(evil, name="evil", tags=["untrusted"])
        registry.set_preview("watercolor", trained_with_image(files / "sample.png"))
        for parent, weight in (("watercolor", 0.6), ("neon-light", 0.4)):
            details = {"method": "svd", "rank": 4, "input": {"name": parent, "weight": weight}}
            registry.add_lineage("adapter", "pixel-art", "adapter", parent, "merged-from", details)
        url = "https://huggingface.co/alice/pixel-art"
        registry.record_publication("pixel-art", "alice/pixel-art", "main", "0123456789abcdef", url)
        registry.add_lineage(
            "adapter", "evil", "dataset", "/data/evil", "trained-from", {"note": EVIL_DETAIL}
        )
        registry.create_mix("evil-mix", [MixMember("evil", 0.5)], description=EVIL_MIX)
    with run_server(home) as running:
        yield running


@pytest.fixture(scope="module")
def browser(server: WebServer) -> Iterator[Any]:
    """One headless Chromium for the module."""
    with chromium() as driver:
        yield driver


def trained_with_image(path: Path) -> Path:
    """A small PNG standing in for the image an adapter was trained with."""
    from PIL import Image

    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(path)
    return path


def option_values(driver: Any, select: str) -> list[str]:
    return driver.execute_script(
        f"return [...document.querySelectorAll('{select} option')].map((o) => o.value)"
    )


def open_page(driver: Any, server: WebServer, fragment: str = "#/") -> None:
    """Load the page afresh (a new document: no state left from the previous test)."""
    driver.get("about:blank")
    driver.get(f"{server.url}/{fragment}")


def test_gallery_lists_registered_adapters_with_previews(server: WebServer, browser: Any) -> None:
    open_page(browser, server)
    wait(browser, lambda d: len(card_names(d)) == 4)
    assert card_names(browser) == ["evil", "neon-light", "pixel-art", "watercolor"]
    watercolor = css(browser, '#gallery li[data-ref="watercolor"]')[0]
    assert "rank 4" in watercolor.text and "tiny-sd1" in watercolor.text
    assert "paint" in watercolor.text and "watercolor" in watercolor.text
    img = wait(browser, lambda d: css(d, '#gallery li[data-ref="watercolor"] img.preview'))[0]
    wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", img) == 64)
    assert css(browser, '#gallery li[data-ref="neon-light"] .placeholder[role="img"]')
    link = css(browser, '#gallery li[data-ref="neon-light"] a.card-link')[0]
    assert link.get_attribute("href").endswith("#/adapter/neon-light")
    assert css(browser, '#gallery li[data-ref="neon-light"] .card-tags')[0].text == "lighting"
    script = "return performance.getEntriesByType('resource').map((e) => e.name)"
    fetched = browser.execute_script(script)
    assert any("/app.css" in u for u in fetched) and any("/v1/adapters" in u for u in fetched)
    assert [u for u in fetched if not u.startswith(server.url + "/")] == []  # no CDN, no network


def test_adapter_view_shows_inspect_facts_lineage_and_publications(
    server: WebServer, browser: Any
) -> None:
    open_page(browser, server, "#/adapter/pixel-art")
    lineage = wait(browser, lambda d: css(d, "#adapter-lineage li"))
    assert len(lineage) == 2 and "merged-from" in lineage[0].text
    summaries = [s.text for s in css(browser, "#adapter-lineage details summary")]
    assert summaries == ["input.weight=0.6; method=svd; rank=4; input.name=watercolor",
                         "input.weight=0.4; method=svd; rank=4; input.name=neon-light"]  # fmt: skip
    parent = css(browser, '#adapter-lineage a[href="#/adapter/watercolor"]')
    assert parent
    body = css(browser, "#adapter-detail")[0].text
    record = server.get("/v1/adapters/pixel-art")["adapter"]
    for fact in ("Format", "Network type", "Components", "Rank summary", "Alpha", "Dtype",
                 "Parameters", "Modules", "Targets", "Base evidence", "SHA-256", "AutoV3"):  # fmt: skip
        assert fact in body, fact
    assert record["autov3"] and record["autov3"] in body
    assert record["path"] in body and f"{record['param_count']:,}" in body
    repo = css(browser, 'a[href="https://huggingface.co/alice/pixel-art"]')[0]
    assert repo.text == "alice/pixel-art" and "0123456789ab" in body
    parent[0].click()  # lineage links open the parent
    wait(browser, lambda d: css(d, "#adapter-title")[0].text == "watercolor")
    wait(browser, lambda d: any("pixel-art" in e.text for e in css(d, "#adapter-lineage")))  # child


def test_keyboard_reaches_and_opens_a_card(server: WebServer, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server)
    wait(browser, lambda d: len(card_names(d)) == 4)
    body = css(browser, "body")[0]
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "skip-link"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    assert browser.execute_script("return location.hash") == "#/"  # the skip link keeps the route
    css(browser, "#filter-clear")[0].send_keys(
        Keys.TAB
    )  # from the last filter control, the first card
    link = browser.switch_to.active_element
    assert link.text == "evil" and link.tag_name == "a"
    link.send_keys(Keys.ENTER)
    wait(browser, lambda d: css(d, "#adapter-title") and css(d, "#adapter-title")[0].text == "evil")


def test_filters_narrow_the_gallery(server: WebServer, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    open_page(browser, server)
    wait(browser, lambda d: len(card_names(d)) == 4)
    wait(browser, lambda d: "paint" in option_values(d, "#filter-tag"))
    Select(css(browser, "#filter-tag")[0]).select_by_value("paint")
    wait(browser, lambda d: card_names(d) == ["watercolor"])
    Select(css(browser, "#filter-tag")[0]).select_by_value("style")
    wait(browser, lambda d: card_names(d) == ["pixel-art", "watercolor"])
    css(browser, "#filter-clear")[0].click()
    wait(browser, lambda d: len(card_names(d)) == 4)
    search = css(browser, "#filter-q")[0]
    search.send_keys("neon\n")  # Enter submits the filter form
    wait(browser, lambda d: card_names(d) == ["neon-light"])
    assert "1 of 4" in css(browser, "#gallery-count")[0].text


def test_tags_added_and_removed_in_the_page_reach_the_cli(server: WebServer, browser: Any) -> None:
    open_page(browser, server, "#/adapter/pixel-art")
    field = wait(browser, lambda d: css(d, "#tag-input"))[0]
    assert css(browser, 'label[for="tag-input"]')
    field.send_keys("favourite, keeper")
    css(browser, "#tag-add")[0].click()
    wait(browser, lambda d: css(d, '#adapter-tags li[data-tag="keeper"]'))
    assert [r["name"] for r in server.cli("list", "--tag", "favourite")] == ["pixel-art"]
    css(browser, '#adapter-tags button[aria-label="Remove tag favourite"]')[0].click()
    wait(browser, lambda d: not css(d, '#adapter-tags li[data-tag="favourite"]'))
    assert server.cli("list", "--tag", "favourite") == []
    assert [r["name"] for r in server.cli("list", "--tag", "keeper")] == ["pixel-art"]
    wait(browser, lambda d: css(d, 'a[href="#/mix?add=pixel-art"]'))[
        0
    ].click()  # "Add to a mix" opens the composer
    wait(
        browser,
        lambda d: (
            [li.get_attribute("data-ref") for li in css(d, "#mix-members li.member")]
            == ["pixel-art"]
        ),
    )


def test_bad_tag_shows_the_server_message(server: WebServer, browser: Any) -> None:
    open_page(browser, server, "#/adapter/neon-light")
    wait(browser, lambda d: css(d, "#tag-input"))[0].send_keys("no spaces allowed!\n")
    notice = wait(browser, lambda d: [n for n in css(d, "#notice.error") if n.is_displayed()])[0]
    assert notice.text
    assert "lighting" in css(browser, "#adapter-tags")[0].text


def compose(driver: Any, server: WebServer, members: list[str]) -> None:
    """Open the composer and add `members` through the picker."""
    from selenium.webdriver.support.ui import Select

    open_page(driver, server, "#/mix")
    wait(driver, lambda d: len(option_values(d, "#mix-pick")) == 4)
    css(driver, "#mix-clear")[0].click()
    for ref in members:
        Select(css(driver, "#mix-pick")[0]).select_by_value(ref)
        css(driver, "#mix-add")[0].click()
    wait(
        driver,
        lambda d: (
            [li.get_attribute("data-ref") for li in css(d, "#mix-members li.member")] == members
        ),
    )


def test_composed_mix_is_saved_listed_and_deleted(server: WebServer, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    compose(browser, server, ["watercolor", "neon-light"])
    rows = css(browser, "#mix-members li.member")
    slider = rows[0].find_element("css selector", "input[type=range]")
    slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # the slider works from the keyboard
    number = rows[1].find_element("css selector", "input[type=number]")
    number.clear()
    number.send_keys("0.5")
    for el in (slider, number):
        assert css(browser, f'label[for="{el.get_attribute("id")}"]')
    assert (
        rows[0].find_element("css selector", "input[type=number]").get_attribute("value") == "0.9"
    )
    css(browser, "#mix-name")[0].send_keys("castle-look")
    css(browser, "#mix-description")[0].send_keys("soft light")
    css(browser, "#mix-save")[0].click()
    wait(browser, lambda d: css(d, '#mix-list li[data-mix="castle-look"]'))
    [mix] = [m for m in server.cli("mix", "list") if m["name"] == "castle-look"]
    assert [(m["ref"], m["weight"]) for m in mix["members"]] == [
        ("watercolor", 0.9),
        ("neon-light", 0.5),
    ]
    assert mix["description"] == "soft light"
    delete = css(browser, '#mix-list li[data-mix="castle-look"] button.danger')[0]
    delete.click()
    delete.click()  # the second press confirms
    wait(browser, lambda d: not css(d, '#mix-list li[data-mix="castle-look"]'))
    assert "castle-look" not in [m["name"] for m in server.cli("mix", "list")]


def test_trying_a_mix_shows_a_png_and_the_server_state(server: WebServer, browser: Any) -> None:
    compose(browser, server, ["watercolor", "pixel-art"])
    prompt = css(browser, "#mix-prompt")[0]
    prompt.clear()
    prompt.send_keys(PROMPT)
    steps = css(browser, "#mix-steps")[0]
    steps.clear()
    steps.send_keys("2")
    css(browser, "#mix-try")[0].click()
    img = wait(browser, lambda d: css(d, "#mix-image"), timeout=120)[0]
    src = img.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(src.split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 100
    assert browser.execute_script("return arguments[0].naturalWidth", img) > 0
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size[0] > 0
    open_page(browser, server, "#/status")
    table = wait(browser, lambda d: css(d, "#recent-table"))[0]
    assert PROMPT in table.text and "watercolor" in table.text
    body = css(browser, "#status-body")[0].text
    assert "tiny" in body and "Pipeline loaded" in body


def test_compare_renders_one_image_per_weight(server: WebServer, browser: Any) -> None:
    """The composer's "Compare" asks for one image per weight of one adapter, all at once."""
    compose(browser, server, ["watercolor", "pixel-art"])
    steps = css(browser, "#mix-steps")[0]
    steps.clear()
    steps.send_keys("2")
    weights = css(browser, "#mix-compare-weights")[0]
    weights.clear()
    weights.send_keys("0, x")
    css(browser, '#mix-members li[data-ref="watercolor"] button.compare')[0].click()
    wait(browser, lambda d: "as numbers separated by commas" in css(d, "#mix-result")[0].text)
    weights.clear()
    weights.send_keys("0, 1, 2")
    css(browser, '#mix-members li[data-ref="watercolor"] button.compare')[0].click()
    images = wait(browser, lambda d: len(css(d, "#compare-grid img.generated")) == 3, timeout=120)
    assert images
    cells = css(browser, "#compare-grid li")
    assert [li.get_attribute("data-weight") for li in cells] == ["0", "1", "2"]
    assert [li.text for li in cells] == ["watercolor: 0", "watercolor: 1", "watercolor: 2"]
    srcs = [img.get_attribute("src") for img in css(browser, "#compare-grid img.generated")]
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(set(srcs)) == 3  # the weight changed the picture
    assert_nothing_injected(browser)


def test_preview_generated_on_request_is_stored_in_the_home(
    server: WebServer, browser: Any
) -> None:
    open_page(browser, server, "#/adapter/neon-light")
    wait(browser, lambda d: css(d, "#preview-make"))[0].click()
    img = wait(browser, lambda d: css(d, "#detail-thumb img.preview"), timeout=120)[0]
    wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", img) > 0)
    preview = server.get("/v1/adapters/neon-light")["adapter"]["preview"]
    assert (server.home / "previews" / preview).is_file()


def assert_nothing_injected(driver: Any) -> None:
    """No script ran (no alert, no global set) and no element was made from the markup."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 (the property raises when no alert is open)
    assert driver.execute_script("return window.__xss === undefined")
    injected = "#main script, #main b, #main img[src='x'], #main img:not([src^='blob:']):not([src^='data:'])"
    assert driver.execute_script(f"return document.querySelectorAll({injected!r}).length") == 0


def test_markup_from_file_metadata_is_shown_as_text(server: WebServer, browser: Any) -> None:
    open_page(browser, server)
    card = wait(browser, lambda d: css(d, '#gallery li[data-ref="evil"] .trigger-text'))[0]
    assert card.text == '<script>window.__xss=1</script>, <img src=x onerror="alert(2)">'
    assert_nothing_injected(browser)
    open_page(browser, server, "#/adapter/evil")
    wait(browser, lambda d: css(d, "#adapter-triggers li"))
    chips = [li.text for li in css(browser, "#adapter-triggers li")]
    assert chips == ["<script>window.__xss=1</script>", '<img src=x onerror="alert(2)">']
    assert css(browser, "#adapter-description")[0].text == EVIL_DESCRIPTION
    summary = css(browser, "#adapter-lineage details summary")[0]
    assert summary.text == f"note={EVIL_DETAIL}"
    summary.click()
    assert EVIL_DETAIL in css(browser, "#adapter-lineage details pre")[0].text
    css(browser, ".detail-section details summary")[-1].click()  # the raw metadata table
    assert EVIL_DESCRIPTION in css(browser, "table.kv")[-1].text
    assert_nothing_injected(browser)


def test_markup_in_tags_mixes_and_errors_is_shown_as_text(server: WebServer, browser: Any) -> None:
    open_page(browser, server, "#/adapter/evil")
    wait(browser, lambda d: css(d, "#tag-input"))[0].send_keys(EVIL_TAG + "\n")
    wait(
        browser,
        lambda d: EVIL_TAG in [li.get_attribute("data-tag") for li in css(d, "#adapter-tags li")],
    )
    assert EVIL_TAG in css(browser, "#adapter-tags")[0].text
    assert "evil" in [r["name"] for r in server.cli("list", "--tag", EVIL_TAG)]
    css(browser, "#tag-input")[0].send_keys("<b>no spaces</b>\n")  # refused: the message quotes it
    notice = wait(browser, lambda d: [n for n in css(d, "#notice.error") if n.is_displayed()])[0]
    assert "<b>no spaces</b>" in notice.text
    assert_nothing_injected(browser)
    open_page(browser, server)
    wait(browser, lambda d: EVIL_TAG in option_values(d, "#filter-tag"))
    card = css(browser, '#gallery li[data-ref="evil"] .card-tags')[0]
    assert EVIL_TAG in card.text
    assert_nothing_injected(browser)
    open_page(browser, server, "#/mix")
    saved = wait(browser, lambda d: css(d, '#mix-list li[data-mix="evil-mix"]'))[0]
    assert EVIL_MIX in saved.text
    assert_nothing_injected(browser)
    server.cli("untag", "evil", EVIL_TAG)


def test_page_scripts_never_parse_markup() -> None:
    """Text reaches the DOM only as text: no innerHTML/outerHTML/insertAdjacentHTML/document.write."""
    static = Path(__file__).resolve().parent.parent / "lorahub" / "server" / "static"
    sinks = (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "DOMParser",
        "createContextualFragment",
    )
    scripts = sorted(static.glob("*.js"))
    assert scripts
    for script in scripts:
        code = "\n".join(
            line for line in script.read_text().splitlines() if not line.lstrip().startswith("//")
        )
        assert not [s for s in sinks if s in code], script.name
    page = (static / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
