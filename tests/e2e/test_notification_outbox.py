"""All in one process behind the gateway: an order event becomes an ``.eml`` file a person can
open, a text message, and entries in the user's ``GET /api/v1/notifications``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from marquee.booking.events import ORDER_PAID, OrderPaid, TicketIssued
from marquee.compose import all_in_one
from marquee.gateway.app import Gateway
from marquee.platform.broker import Event
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from tests.e2e.conftest import Api


@dataclass
class Platform:
    gateway: Gateway
    api: Api
    data_dir: Path


@pytest.fixture
async def platform(e2e_settings: Settings) -> AsyncIterator[Platform]:
    gateway = all_in_one(e2e_settings)
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        yield Platform(gateway, Api(AsgiTransport(gateway)), e2e_settings.data_dir)


def order_paid(user_id: str, tickets: int) -> Event:
    payload = OrderPaid(
        order_id="order-9999",
        user_id=user_id,
        show_id="show-5678",
        show_title="周杰伦 2026 世界巡回演唱会",
        venue="上海体育场",
        session_id="session-001",
        session_starts_at=datetime.now(UTC) + timedelta(days=30),
        area_id="vip-a",
        area_name="VIP A区",
        quantity=tickets,
        unit_price=Decimal("1280"),
        total_amount=Decimal("1280") * tickets,
        currency="CNY",
        paid_at=datetime.now(UTC),
        payment_method="alipay",
        tickets=[
            TicketIssued(
                ticket_id=f"ticket-00{n}",
                qr_payload=f"MQ1.ticket-00{n}.c2lnbmVk",
                qr_url=f"/api/v1/tickets/ticket-00{n}/qr.png?sig=x{n}",
            )
            for n in range(1, tickets + 1)
        ],
    )
    return Event(type=ORDER_PAID, data=payload.model_dump(mode="json"), request_id="abc-123")


async def notifications(platform: Platform, token: str) -> list[dict[str, Any]]:
    answer = await platform.api.get("/api/v1/notifications", token=token)
    assert answer.status == 200, answer.body
    items: list[dict[str, Any]] = answer.json()["notifications"]
    return items


def outbox(data_dir: Path) -> list[Path]:
    directory = data_dir / "outbox"
    return sorted(directory.glob("*.eml")) if directory.exists() else []


def read_eml(path: Path) -> EmailMessage:
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_paid_order_e_tickets_land_in_the_outbox_and_in_the_users_notifications(
    platform: Platform,
) -> None:
    registered = await platform.api.post(
        "/api/v1/auth/register",
        json={
            "email": "alice@example.com",
            "password": "SecurePass123",
            "full_name": "Alice Wang",
            "phone": "+8613812345678",
        },
    )
    assert registered.status == 201, registered.body
    alice = registered.json()
    event = order_paid(alice["user_id"], tickets=2)

    await platform.gateway.kernel.broker.publish(event)

    deadline = time.monotonic() + 15
    while True:
        items = await notifications(platform, alice["access_token"])
        if len(items) == 2 and {item["status"] for item in items} == {"sent"}:
            break
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.1)
    assert {item["channel"] for item in items} == {"email", "sms"}
    assert {item["kind"] for item in items} == {"e_tickets"}
    assert {item["order_id"] for item in items} == {"order-9999"}
    [eml] = outbox(platform.data_dir)
    message = read_eml(eml)
    assert message["To"] == "Alice Wang <alice@example.com>"
    assert "电子票" in message["Subject"]
    assert message["X-Request-ID"] == "abc-123"
    assert message["X-Marquee-Event-ID"] == event.id
    pngs = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert len(pngs) == 2
    assert all(part.get_content().startswith(b"\x89PNG\r\n\x1a\n") for part in pngs)
    [sms] = sorted((platform.data_dir / "sms").glob("*.txt"))
    assert "+8613812345678" in sms.read_text(encoding="utf-8")


async def eventually_in_outbox(
    data_dir: Path, order_id: str, kind: str, timeout: float = 15.0
) -> EmailMessage:
    """The one email of ``kind`` (a subject word) for ``order_id``, once it is written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            message
            for message in map(read_eml, outbox(data_dir))
            if message["X-Marquee-Order-ID"] == order_id and kind in message["Subject"]
        ]
        if found:
            assert len(found) == 1
            return found[0]
        assert time.monotonic() < deadline, f"no {kind} email for {order_id}"
        await asyncio.sleep(0.1)


async def on_sale(api: Api) -> tuple[str, str]:
    """A session and seat area on sale, made through the admin API: (session_id, area_id)."""
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
    assert show.status == 201, show.body
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    session = await api.post(
        f"/api/v1/admin/shows/{show.json()['show_id']}/sessions",
        token=admin,
        json={
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=3)).isoformat(),
        },
    )
    assert session.status == 201, session.body
    session_id = session.json()["session_id"]
    area = await api.post(
        f"/api/v1/admin/sessions/{session_id}/seat-areas",
        token=admin,
        json={"name": "VIP A区", "price": 1280, "capacity": 45},
    )
    assert area.status == 201, area.body
    return session_id, area.json()["area_id"]


async def test_the_seeds_purchase_mails_a_confirmation_then_e_tickets_with_each_request_id(
    platform: Platform,
) -> None:
    api = platform.api
    session_id, area_id = await on_sale(api)
    registered = await api.post(
        "/api/v1/auth/register",
        json={"email": "alice@example.com", "password": "SecurePass123", "full_name": "Alice Wang"},
    )
    token = registered.json()["access_token"]

    placed = await api.post(
        "/api/v1/orders",
        token=token,
        json={"session_id": session_id, "seat_area_id": area_id, "quantity": 2},
        headers={"X-Request-ID": "abc-123"},
    )
    assert placed.status == 201, placed.body
    order_id = placed.json()["order_id"]
    confirmation = await eventually_in_outbox(platform.data_dir, order_id, "订单已创建")
    assert confirmation["X-Request-ID"] == "abc-123"
    assert confirmation["To"] == "Alice Wang <alice@example.com>"

    payment = await api.post(
        f"/api/v1/orders/{order_id}/pay",
        token=token,
        json={"payment_method": "alipay", "payment_token": "alipay_token_xxx"},
        headers={"X-Request-ID": "pay-456"},
    )
    assert payment.status == 200, payment.body
    tickets = await eventually_in_outbox(platform.data_dir, order_id, "电子票")
    assert tickets["X-Request-ID"] == "pay-456"
    pngs = [part for part in tickets.walk() if part.get_content_type() == "image/png"]
    assert len(pngs) == 2
    text = tickets.get_body(("plain",))
    assert text is not None
    for ticket in payment.json()["tickets"]:
        assert ticket["ticket_id"] in text.get_content()
    deadline = time.monotonic() + 15
    # The file is written just before the delivery is marked sent.
    listed = await notifications(platform, token)
    while {n["status"] for n in listed} != {"sent"}:
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.1)
        listed = await notifications(platform, token)
    assert sorted(n["kind"] for n in listed) == ["e_tickets", "order_confirmation"]


async def test_a_buyer_whose_browser_asks_for_english_gets_english_email(
    platform: Platform,
) -> None:
    api = platform.api
    session_id, area_id = await on_sale(api)
    registered = await api.post(
        "/api/v1/auth/register",
        json={"email": "bob@example.com", "password": "SecurePass123", "full_name": "Bob Smith"},
        headers={"Accept-Language": "en-US,en;q=0.9,zh-CN;q=0.5"},
    )
    token = registered.json()["access_token"]
    assert (await api.get("/api/v1/users/me", token=token)).json()["locale"] == "en-US"
    placed = await api.post(
        "/api/v1/orders",
        token=token,
        json={"session_id": session_id, "seat_area_id": area_id, "quantity": 1},
    )
    order_id = placed.json()["order_id"]
    paid = await api.post(
        f"/api/v1/orders/{order_id}/pay",
        token=token,
        json={"payment_method": "wechat_pay", "payment_token": "wechat_token_xxx"},
    )
    assert paid.status == 200, paid.body

    tickets = await eventually_in_outbox(platform.data_dir, order_id, "e-tickets", timeout=60)
    text = tickets.get_body(("plain",))
    assert text is not None
    assert "Dear Bob Smith," in text.get_content()
    assert "Payment method: WeChat Pay" in text.get_content()
    assert "(UTC+08:00)" in text.get_content()  # the venue's clock, in Shanghai


async def test_notifications_are_private_to_a_signed_in_user(platform: Platform) -> None:
    anonymous = await platform.api.get("/api/v1/notifications")
    assert anonymous.status == 401
    bob = await platform.api.post(
        "/api/v1/auth/register",
        json={"email": "bob@example.com", "password": "SecurePass123", "full_name": "Bob"},
    )
    answer = await platform.api.get("/api/v1/notifications", token=bob.json()["access_token"])
    assert answer.status == 200
    assert answer.json() == {"notifications": [], "page": 1, "page_size": 20, "total": 0}
