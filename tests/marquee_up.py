"""A real ``marquee up`` in a subprocess, as a person starts it, and a small JSON client for it.

Demo data on and an organiser account set; a free port and a private data dir. The browser
tests and the seed's curl scenario run against it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ADMIN_EMAIL = "organiser@marquee.test"
ADMIN_PASSWORD = "OrganiserPass123"
BUYER_PASSWORD = "BuyerPass123"


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

    def on_sale_show(self, *, capacity: int, price: float = 100, per_user_limit: int = 4) -> Scene:
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


def start(tmp: Path, **env_extra: str) -> Server:
    """``marquee up`` in a subprocess on a free port with a private data dir, once ready."""
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
    stop(server)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"marquee up did not become ready:\n{tail}", pytrace=False)


@contextmanager
def running(tmp: Path, **env_extra: str) -> Iterator[Server]:
    """``start`` then, whatever happens, ``stop``."""
    server = start(tmp, **env_extra)
    try:
        yield server
    finally:
        stop(server)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
