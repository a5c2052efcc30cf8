"""The seed's scenario 1, typed into a terminal: its five requests with curl, raw UTF-8 and all,
against ``marquee up`` on a free port, and every field the seed shows compared."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.marquee_up import Server, running

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
def marquee(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("curl") is None:
        if servers.services_required():
            pytest.fail("curl is not installed (MARQUEE_REQUIRE_SERVICES is set)")
        pytest.skip("curl is not installed")
    with running(tmp_path_factory.mktemp("seed")) as server:
        yield server


def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    """Run curl as a person would (the URL as typed); status, headers and body."""
    done = subprocess.run(  # noqa: S603
        ["curl", "-s", "-i", "--max-time", "60", *args],  # noqa: S607
        capture_output=True,
        check=True,
    )
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def curl_json(*args: str) -> tuple[int, Any]:
    status, headers, body = curl(*args)
    assert headers["content-type"].startswith("application/"), headers
    return status, json.loads(body)


def test_the_seeds_five_requests_as_written_answer_what_the_seed_shows(
    marquee: Server, tmp_path: Path
) -> None:
    base = marquee.base

    # 1. Register.
    status, account = curl_json(
        "-X", "POST", f"{base}/api/v1/auth/register",
        "-H", "Content-Type: application/json",
        "-d", '{"email": "alice@example.com", "password": "SecurePass123",'
        ' "full_name": "Alice Wang"}',
    )  # fmt: skip
    assert status == 201, account
    assert isinstance(account["user_id"], str)
    assert account["user_id"]
    assert account["access_token"].startswith("eyJ")
    assert account["refresh_token"].startswith("eyJ")
    bearer = f"Authorization: Bearer {account['access_token']}"

    # 2. Browse, the query typed in Chinese and sent as raw UTF-8.
    status, listing = curl_json(f"{base}/api/v1/shows?city=上海&category=演唱会")
    assert status == 200, listing
    jay = next(show for show in listing["shows"] if show["show_id"] == "show-5678")
    assert jay["title"] == "周杰伦 2026 世界巡回演唱会"
    assert jay["venue"] == "上海体育场"
    # The seed's 2026-08-15, moved to the first August 15th at least a week ahead.
    assert re.fullmatch(r"20\d\d-08-15", jay["date"]), jay

    # 3. Sessions and seat areas.
    status, sessions = curl_json(f"{base}/api/v1/shows/show-5678/sessions")
    assert status == 200, sessions
    first = sessions["sessions"][0]
    assert first["session_id"] == "session-001"
    assert first["date"] == f"{jay['date']} 19:30"
    vip_a = next(area for area in first["seat_areas"] if area["area_id"] == "vip-a")
    assert vip_a["name"] == "VIP A区"
    assert vip_a["price"] == 1280
    assert vip_a["available"] == 45

    # 4. Order two seats.
    status, order = curl_json(
        "-X", "POST", f"{base}/api/v1/orders",
        "-H", bearer,
        "-H", "Content-Type: application/json",
        "-d", '{"session_id": "session-001", "seat_area_id": "vip-a", "quantity": 2}',
    )  # fmt: skip
    assert status == 201, order
    assert isinstance(order["order_id"], str)
    assert order["order_id"]
    assert order["total_amount"] == 2560
    assert order["status"] == "pending_payment"
    assert ISO_UTC.match(order["expires_at"]), order

    # 5. Pay.
    status, paid = curl_json(
        "-X", "POST", f"{base}/api/v1/orders/{order['order_id']}/pay",
        "-H", bearer,
        "-H", "Content-Type: application/json",
        "-d", '{"payment_method": "alipay", "payment_token": "alipay_token_xxx"}',
    )  # fmt: skip
    assert status == 200, paid
    assert paid["order_id"] == order["order_id"]
    assert paid["status"] == "paid"
    assert len(paid["tickets"]) == 2
    for ticket in paid["tickets"]:
        assert isinstance(ticket["ticket_id"], str)
        assert ticket["ticket_id"]
        # An absolute URL of a PNG, as the seed's https://cdn.example.com/qr/ticket-001.png.
        assert ticket["qr_code"].startswith(f"{base}/api/v1/tickets/{ticket['ticket_id']}/")
        status, headers, image = curl(ticket["qr_code"])
        assert status == 200
        assert headers["content-type"] == "image/png"
        assert image.startswith(PNG_MAGIC)


def test_what_the_server_refuses_is_problem_details_with_a_request_id(marquee: Server) -> None:
    status, headers, body = curl(marquee.base + "/" + "a" * 100_000)
    assert status == 414
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["request_id"] == headers["x-request-id"]

    status, headers, body = curl(
        "-X", "POST", "-H", "Content-Length: -1", marquee.base + "/api/v1/orders"
    )
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["request_id"] == headers["x-request-id"]
