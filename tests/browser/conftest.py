"""A real ``marquee up`` and Debian's Chromium driven by Playwright, for the web pages.

The server is the CLI in a subprocess (demo data on, an organiser account set) on a free port
with a private data dir, exactly as a person starts it. The browser is ``/usr/bin/chromium``
(or ``MARQUEE_CHROMIUM``); Playwright never downloads one. Without Chromium or Playwright the
tests are skipped with the reason, unless ``MARQUEE_REQUIRE_SERVICES=1``, when they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import servers

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
ADMIN_EMAIL = "organiser@marquee.test"
ADMIN_PASSWORD = "OrganiserPass123"
BUYER_PASSWORD = "BuyerPass123"
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Server:
    """A running ``marquee up`` and a small JSON client for setting the scene."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, json.loads(exc.read() or b"{}")) from None
        return json.loads(raw) if raw else {}

    def admin(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if not self.admin_token:
            login = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            self.admin_token = self.call("POST", "/api/v1/auth/login", login)["access_token"]
        return self.call(method, path, body, self.admin_token)

    def new_buyer(self, name: str = "Test Buyer") -> tuple[str, str]:
        """Register a fresh buyer; returns (email, access token)."""
        email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": BUYER_PASSWORD, "full_name": name}
        token = self.call("POST", "/api/v1/auth/register", body)["access_token"]
        return email, token

    def on_sale_show(self, *, capacity: int, price: str = "100", per_user_limit: int = 4) -> Scene:
        """A new on-sale show with one future session and one seat area."""
        tag = uuid.uuid4().hex[:8]
        show = self.admin(
            "POST",
            "/api/v1/admin/shows",
            {
                "title": f"Rush test {tag}",
                "category": "Concert",
                "venue": f"Rush Hall {tag}",
                "city": "Testville",
                "status": "on_sale",
            },
        )
        session = self.admin(
            "POST",
            f"/api/v1/admin/shows/{show['show_id']}/sessions",
            {
                "starts_at": "2031-06-01T11:30:00Z",
                "ends_at": "2031-06-01T14:30:00Z",
                "per_user_limit": per_user_limit,
            },
        )
        area = self.admin(
            "POST",
            f"/api/v1/admin/sessions/{session['session_id']}/seat-areas",
            {"name": "Floor", "price": price, "capacity": capacity},
        )
        return Scene(show["show_id"], show["title"], session["session_id"], area["area_id"])

    def order(self, token: str, session_id: str, area_id: str, quantity: int) -> dict[str, Any]:
        body = {"session_id": session_id, "seat_area_id": area_id, "quantity": quantity}
        return self.call("POST", "/api/v1/orders", body, token)

    def pay(self, token: str, order_id: str) -> dict[str, Any]:
        body = {"payment_method": "alipay", "payment_token": "alipay_token_demo"}
        return self.call("POST", f"/api/v1/orders/{order_id}/pay", body, token)


@dataclass(frozen=True)
class Scene:
    show_id: str
    title: str
    session_id: str
    area_id: str


def _start(tmp: Path, **env_extra: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(
        MARQUEE_DATA_DIR=str(tmp / "var"),
        MARQUEE_ADMIN_EMAIL=ADMIN_EMAIL,
        MARQUEE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MARQUEE_LOG_LEVEL="WARNING",
        **env_extra,
    )
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "marquee", "up", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(server.url("/readyz"), timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.25)
    _stop(server)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"marquee up did not become ready:\n{tail}", pytrace=False)


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``marquee up`` with demo data and limits high enough for tests that are not about them."""
    running = _start(
        tmp_path_factory.mktemp("marquee-web"),
        MARQUEE_RATE_LIMIT_PER_SECOND="1000",
        MARQUEE_RATE_LIMIT_BURST="1000",
    )
    yield running
    _stop(running)


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``marquee up`` allowing each client one request per ten seconds, in bursts of two."""
    running = _start(
        tmp_path_factory.mktemp("marquee-web-limited"),
        MARQUEE_RATE_LIMIT_PER_SECOND="0.1",
        MARQUEE_RATE_LIMIT_BURST="2",
    )
    yield running
    _stop(running)


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
