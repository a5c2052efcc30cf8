"""A real ``marquee up`` and Debian's Chromium driven by Playwright, for the web pages.

The server is the CLI in a subprocess (demo data on, an organiser account set) on a free port
with a private data dir, exactly as a person starts it. The browser is ``/usr/bin/chromium``
(or ``MARQUEE_CHROMIUM``); Playwright never downloads one. Without Chromium or Playwright the
tests are skipped with the reason, unless ``MARQUEE_REQUIRE_SERVICES=1``, when they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.marquee_up import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    BUYER_PASSWORD,
    ApiError,
    Scene,
    Server,
    free_port,
    running,
)

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "BUYER_PASSWORD",
    "ApiError",
    "Scene",
    "Server",
    "free_port",
]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = os.environ.get("MARQUEE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's own waits (expect, locators), in milliseconds: generous for a loaded CI box.
WAIT_MS = 15_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(why: str) -> None:
    if servers.services_required():
        pytest.fail(f"{why} (MARQUEE_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(f"{why} (set MARQUEE_REQUIRE_SERVICES=1 to make this a failure)")


def playwright_expect() -> Any:
    """Playwright's ``expect``, for the test modules to import at the top: without Playwright
    the module is skipped with the reason (or fails when services are required)."""
    try:
        from playwright.sync_api import expect
    except ImportError as exc:
        why = f"Playwright is not installed ({exc}); .venv/bin/pip install playwright"
        if servers.services_required():
            raise ImportError(f"{why} (MARQUEE_REQUIRE_SERVICES is set)") from exc
        pytest.skip(
            f"{why} (set MARQUEE_REQUIRE_SERVICES=1 to make this a failure)",
            allow_module_level=True,
        )
    return expect


# -- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``marquee up`` with demo data and limits high enough for tests that are not about them."""
    with running(
        tmp_path_factory.mktemp("marquee-web"),
        MARQUEE_RATE_LIMIT_PER_SECOND="1000",
        MARQUEE_RATE_LIMIT_BURST="1000",
    ) as server:
        yield server


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``marquee up`` allowing each client one request per ten seconds, in bursts of two."""
    with running(
        tmp_path_factory.mktemp("marquee-web-limited"),
        MARQUEE_RATE_LIMIT_PER_SECOND="0.1",
        MARQUEE_RATE_LIMIT_BURST="2",
    ) as server:
        yield server


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright is not installed ({exc}); pip install playwright")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    manager = sync_playwright()
    playwright = manager.start()
    try:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:
            _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Any]:
    """``new_page(locale="zh-CN", viewport=...)``: a page in a fresh browser context (its own
    storage, so its own signed-in user). Page errors fail the test."""
    contexts = []
    errors: list[str] = []

    def make(
        locale: str = "zh-CN", width: int = 1200, height: int = 900, mobile: bool = False
    ) -> Any:
        context = chromium.new_context(
            locale=locale,
            # A buyer in China by default; times on the pages are the viewer's local times.
            timezone_id="Asia/Shanghai" if locale.startswith("zh") else "Europe/London",
            viewport={"width": width, "height": height},
            is_mobile=mobile,
            has_touch=mobile,
            device_scale_factor=2 if mobile else 1,
            service_workers="block",
        )
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
