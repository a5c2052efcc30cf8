"""The seed's scenario 4: one order's request ID in every service's log lines, the
notification after the broker hop included, and ``marquee trace`` showing it as one tree."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marquee.platform.logging import configure_logging, flush_logs, stop_logging
from marquee.platform.settings import Settings
from tests.e2e.conftest import Api

REQUEST_ID = "order-trace-0001"
SERVICES = ("gateway", "booking", "identity", "catalog", "notification")
# The seed's format: ``2026-01-14T15:30:00Z [abc-123] message``.
SEED_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[(?P<id>[^\]]+)\] (?P<message>.*)$")
_QUIETED = ("uvicorn.access", "aiosqlite", "asyncio", "alembic")


@pytest.fixture
def service_logs(e2e_settings: Settings) -> Iterator[Path]:
    """Logging as ``marquee up`` sets it up: one file per service under DATA_DIR/logs.

    The root logger is put back afterwards, so other tests log as before.
    """
    root = logging.getLogger()
    saved = list(root.handlers), root.level, {n: logging.getLogger(n).level for n in _QUIETED}
    log_dir = e2e_settings.data_dir / "logs"
    configure_logging("INFO", "text", log_dir)
    yield log_dir
    handlers, level, quieted = saved
    stop_logging()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, quiet_level in quieted.items():
        logging.getLogger(name).setLevel(quiet_level)


@dataclass
class Order:
    user_id: str
    session_id: str
    area_id: str
    order_id: str


async def place_one_order(api: Api) -> Order:
    """Set a show on sale and sign a buyer up (each with request IDs of their own), then
    place one order under ``REQUEST_ID``."""
    login = await api.post(
        "/api/v1/auth/login", json={"email": "admin@marquee.test", "password": "AdminPass123"}
    )
    admin = login.json()["access_token"]
    show = await api.post(
        "/api/v1/admin/shows",
        token=admin,
        json={
            "title": "周杰伦 2026 世界巡回演唱会",
            "category": "演唱会",
            "venue": "上海体育场",
            "city": "上海",
            "status": "on_sale",
        },
    )
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    session = await api.post(
        f"/api/v1/admin/shows/{show.json()['show_id']}/sessions",
        token=admin,
        json={
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=3)).isoformat(),
            "per_user_limit": 4,
        },
    )
    session_id = session.json()["session_id"]
    area = await api.post(
        f"/api/v1/admin/sessions/{session_id}/seat-areas",
        token=admin,
        json={"name": "VIP A区", "price": 1280, "capacity": 45},
    )
    buyer = await api.post(
        "/api/v1/auth/register",
        json={"email": "alice@example.com", "password": "SecurePass123", "full_name": "Alice"},
    )
    assert buyer.status == 201, buyer.json()
    area_id = area.json()["area_id"]
    answer = await api.post(
        "/api/v1/orders",
        token=buyer.json()["access_token"],
        json={"session_id": session_id, "seat_area_id": area_id, "quantity": 2},
        headers={"X-Request-ID": REQUEST_ID},
    )
    assert answer.status == 201, answer.json()
    assert answer.header("x-request-id") == REQUEST_ID
    return Order(buyer.json()["user_id"], session_id, area_id, answer.json()["order_id"])


def lines_of(log_dir: Path, service: str, request_id: str) -> list[str]:
    """The messages of ``request_id``'s lines in ``service``'s log, each checked for the seed's
    format."""
    flush_logs()
    path = log_dir / f"{service}.log"
    if not path.exists():
        return []
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = SEED_LINE.match(raw)
        if line and line["id"] == request_id:
            found.append(line["message"])
    return found


async def wait_for_line(log_dir: Path, service: str, pattern: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(re.search(pattern, m) for m in lines_of(log_dir, service, REQUEST_ID)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} line for {REQUEST_ID} in {service}.log")
        await asyncio.sleep(0.05)


def assert_has(lines: list[str], pattern: str) -> None:
    assert any(re.search(pattern, line) for line in lines), (pattern, lines)


async def test_one_order_leaves_its_request_id_in_every_services_log_and_in_its_trace(
    service_logs: Path, api: Api, e2e_settings: Settings
) -> None:
    order = await place_one_order(api)
    # The email is sent after the outbox relay and the broker hop: wait for it.
    await wait_for_line(service_logs, "notification", rf"Sending .*email order={order.order_id}")

    lines = {service: lines_of(service_logs, service, REQUEST_ID) for service in SERVICES}
    assert_has(lines["gateway"], r"^POST /api/v1/orders status=201 latency=\d+ms$")
    assert_has(lines["booking"], rf"^CreateOrder started user={order.user_id}$")
    assert_has(lines["booking"], r"^Calling Identity\.GetProfile")
    assert_has(lines["booking"], r"^Calling Catalog\.CheckAvailability$")
    # Every outbound call logs its callee and its duration.
    assert_has(lines["booking"], r"^Identity\.GetProfile .*duration=\d+ms$")
    assert_has(lines["booking"], r"^Catalog\.CheckAvailability duration=\d+ms$")
    assert_has(lines["identity"], rf"^GetProfile user={order.user_id} duration=\d+ms$")
    assert_has(lines["catalog"], rf"^CheckAvailability session={order.session_id} available=45\b")
    assert_has(lines["notification"], rf"email order={order.order_id}")
    # One access line: the set-up requests had IDs of their own.
    assert len(lines["gateway"]) == 1

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env["COLUMNS"] = "200"  # one tree line per log line, however long
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "marquee", "trace", REQUEST_ID),
        *("--data-dir", str(e2e_settings.data_dir)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    printed = out.decode()
    tree = printed.splitlines()
    assert tree[0].startswith(REQUEST_ID)

    def depth(service: str) -> int:
        """How far in ``service``'s node is drawn (its label starts the tree branch)."""
        nodes = [line for line in tree if re.search(rf"── {service}\b(  \d+ms)?$", line)]
        assert len(nodes) == 1, (service, printed)
        return nodes[0].index(service)

    assert depth("gateway") < depth("booking") < depth("notification")
    assert depth("booking") == depth("identity") == depth("catalog")
    assert f"CreateOrder started user={order.user_id}" in printed
    assert f"email order={order.order_id}" in printed
