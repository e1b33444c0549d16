"""Support for the web page's browser tests: a real `lorahub serve` subprocess and headless Chromium.

Chromium is Debian's (`chromium` + `chromium-driver`), driven by Selenium. Without them the
browser tests skip with a reason, except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serve_process import lorahub_serve

CHROMIUM = os.environ.get("LORAHUB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LORAHUB_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
WIDTH, HEIGHT = 1280, 900
REPO_ROOT = Path(__file__).resolve().parent.parent


def require_browser() -> None:
    """Skip (fail in CI) when Chromium, its driver or Selenium is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() or shutil.which(p))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"browser tests need {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class WebServer:
    """A running `lorahub serve` and the environment (home, cache) it was started with."""

    url: str
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    token: str | None = None

    def get(self, path: str) -> Any:
        """GET a JSON route (with the token when there is one)."""
        request = urllib.request.Request(self.url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def cli(self, *args: str) -> Any:
        """Run a lorahub command in-process against this server's home; returns its --json output."""
        from click.testing import CliRunner

        from lorahub.cli import main

        result = CliRunner().invoke(main, [*args, "--json"], env={"LORAHUB_HOME": str(self.home)})
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@contextlib.contextmanager
def patched_env(**values: str) -> Iterator[None]:
    """Set environment variables for a block (module fixtures cannot use monkeypatch)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def run_server(home: Path, token: str | None = None, timeout: float = 60.0) -> Iterator[WebServer]:
    """Start `python -m lorahub serve` on a free loopback port with its own home; stop it after."""
    env = {**os.environ, "LORAHUB_HOME": str(home), "LORAHUB_CACHE": os.environ["LORAHUB_CACHE"]}
    env.pop("LORAHUB_TOKEN", None)
    args = ["--base", "tiny", "--log-level", "warning"] + (["--token", token] if token else [])
    log = home / "server.log"
    with lorahub_serve(env, log, *args, cwd=REPO_ROOT, timeout=timeout) as (url, process):
        yield WebServer(url, home, env, process, log, token)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (fresh profile, 1280x900 viewport) driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="lorahub-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.set_script_timeout(120)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def register_examples(home: Path, folder: Path, specs: list[tuple[Any, list[str]]]) -> None:
    """Write example adapters for the tiny base and register them (name, tags, trigger words) in `home`."""
    from lorahub.examples import write_example_adapter
    from lorahub.registry import Registry

    with patched_env(LORAHUB_HOME=str(home)), Registry() as registry:
        for spec, tags in specs:
            path = write_example_adapter("tiny", folder / f"{spec.name}.safetensors", spec)
            registry.add_adapter(
                path, name=spec.name, tags=tags, description=spec.description or None,
                trigger_words=list(spec.trigger_words) or None,
            )  # fmt: skip


def add_metadata(path: Path, extra: dict[str, str]) -> Path:
    """Rewrite a safetensors file with extra metadata entries (as another tool might have written them)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    save_file(tensors, str(path), metadata={**metadata, **extra})
    return path


def wait(driver: Any, condition: Any, timeout: float = 30.0) -> Any:
    """Wait until `condition(driver)` is truthy (elements re-drawn meanwhile are retried); returns it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(
        driver, timeout, 0.1, ignored_exceptions=[StaleElementReferenceException]
    )
    return waiter.until(condition)


def css(driver: Any, selector: str) -> list[Any]:
    """The elements matching a CSS selector."""
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def card_names(driver: Any) -> list[str]:
    """The refs of the gallery's cards, in order (read in one script: no stale elements)."""
    script = "return [...document.querySelectorAll('#gallery li.card')].map((li) => li.dataset.ref)"
    return driver.execute_script(script)
