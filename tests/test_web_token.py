"""With `serve --token`, the page asks for the token, keeps it for the tab and sends it as a bearer header."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web_browser import (
    WebServer,
    card_names,
    chromium,
    css,
    register_examples,
    require_browser,
    run_server,
    wait,
)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """One adapter and a server that requires a token."""
    require_browser()
    from lorahub.examples import ExampleAdapter

    home = tmp_path_factory.mktemp("web-token-home")
    files = tmp_path_factory.mktemp("web-token-files")
    register_examples(home, files, [(ExampleAdapter("guarded", 4, 4.0, 1), ["private"])])
    with run_server(home, token=TOKEN) as running:
        yield running


def token_asked(driver: Any) -> bool:
    panel = css(driver, "#token-panel")
    return bool(panel) and panel[0].is_displayed()


def test_page_asks_for_the_token_and_works_after_it(server: WebServer) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/v1/adapters", timeout=10)
    assert err.value.code == 401  # the API is guarded; the page's own files are not
    with chromium() as driver:
        driver.get(server.url + "/#/")
        wait(driver, token_asked)
        assert css(driver, "#gallery li.card") == []
        field = css(driver, "#token-input")[0]
        assert field.get_attribute("type") == "password"
        assert css(driver, 'label[for="token-input"]')[0].text == "API token"
        assert driver.switch_to.active_element == field  # focus moves to the input
        field.send_keys("wrong-token\n")
        wait(
            driver, lambda d: token_asked(d) and "not accepted" in css(d, "#token-message")[0].text
        )
        css(driver, "#token-input")[0].send_keys(TOKEN + "\n")
        wait(
            driver,
            lambda d: (
                [li.get_attribute("data-ref") for li in css(d, "#gallery li.card")] == ["guarded"]
            ),
        )
        assert not token_asked(driver)
        assert driver.execute_script("return sessionStorage.getItem('lorahub-token')") == TOKEN
        driver.refresh()  # the token is kept for the tab: no second prompt
        wait(driver, lambda d: card_names(d) == ["guarded"])
        assert not token_asked(driver)
        assert "tiny" in wait(driver, lambda d: css(d, "#server-line")[0].text)
