"""Booking through the gateway: the seed's scenario 1 and every order, payment, ticket, refund
and check-in path a buyer or venue staff can take."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from marquee.booking.tickets import TicketVerifier
from tests.e2e.conftest import Api

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Stage:
    """A show on sale with one session and one seat area, made through the admin API."""

    admin: str
    show_id: str
    session_id: str
    area_id: str


async def admin_token(api: Api) -> str:
    answer = await api.post(
        "/api/v1/auth/login", json={"email": "admin@marquee.test", "password": "AdminPass123"}
    )
    assert answer.status == 200, answer.json()
    token: str = answer.json()["access_token"]
    return token


async def make_stage(
    api: Api,
    *,
    capacity: int = 45,
    price: Any = 1280,
    per_user_limit: int = 4,
    title: str = "周杰伦 2026 世界巡回演唱会",
    starts_in: timedelta = timedelta(days=30),
) -> Stage:
    admin = await admin_token(api)
    show = await api.post(
        "/api/v1/admin/shows",
        token=admin,
        json={
            "title": title,
            "category": "演唱会",
            "venue": "上海体育场",
            "city": "上海",
            "status": "on_sale",
        },
    )
    assert show.status == 201, show.json()
    show_id = show.json()["show_id"]
    starts = datetime.now(UTC).replace(microsecond=0) + starts_in
    session = await api.post(
        f"/api/v1/admin/shows/{show_id}/sessions",
        token=admin,
        json={
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=3)).isoformat(),
            "per_user_limit": per_user_limit,
        },
    )
    assert session.status == 201, session.json()
    session_id = session.json()["session_id"]
    area = await api.post(
        f"/api/v1/admin/sessions/{session_id}/seat-areas",
        token=admin,
        json={"name": "VIP A区", "price": price, "capacity": capacity},
    )
    assert area.status == 201, area.json()
    return Stage(admin, show_id, session_id, area.json()["area_id"])


async def register(api: Api, email: str) -> tuple[str, str]:
    answer = await api.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "SecurePass123", "full_name": email.split("@")[0]},
    )
    assert answer.status == 201, answer.json()
    body = answer.json()
    return body["user_id"], body["access_token"]


async def order(api: Api, stage: Stage, token: str, quantity: int = 2, **kw: Any) -> Any:
    return await api.post(
        "/api/v1/orders",
        token=token,
        json={"session_id": stage.session_id, "seat_area_id": stage.area_id, "quantity": quantity},
        **kw,
    )


async def placed(api: Api, stage: Stage, token: str, quantity: int = 2) -> str:
    answer = await order(api, stage, token, quantity)
    assert answer.status == 201, answer.json()
    order_id: str = answer.json()["order_id"]
    return order_id


async def pay(
    api: Api,
    order_id: str,
    token: str,
    payment_token: str = "alipay_token_xxx",  # noqa: S107 - the seed's sandbox token
    **kw: Any,
) -> Any:
    return await api.post(
        f"/api/v1/orders/{order_id}/pay",
        token=token,
        json={"payment_method": "alipay", "payment_token": payment_token},
        **kw,
    )


async def paid(api: Api, stage: Stage, token: str, quantity: int = 2) -> dict[str, Any]:
    order_id = await placed(api, stage, token, quantity)
    answer = await pay(api, order_id, token)
    assert answer.status == 200, answer.json()
    body: dict[str, Any] = answer.json()
    return body


async def available(api: Api, stage: Stage) -> int:
    answer = await api.get(f"/api/v1/shows/{stage.show_id}/sessions")
    assert answer.status == 200, answer.json()
    for session in answer.json()["sessions"]:
        for area in session["seat_areas"]:
            if area["area_id"] == stage.area_id:
                left: int = area["available"]
                return left
    raise AssertionError("area not listed")


@pytest.fixture
async def stage(api: Api) -> Stage:
    return await make_stage(api)


@pytest.fixture
async def alice(api: Api) -> str:
    return (await register(api, "alice@example.com"))[1]


@pytest.fixture
async def bob(api: Api) -> str:
    return (await register(api, "bob@example.com"))[1]


# -- the seed's scenario 1 ------------------------------------------------------------------


async def test_alice_buys_two_tickets_end_to_end_as_in_the_seeds_scenario_1(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    stage = await make_stage(api)
    # 1. register
    registered = await api.post(
        "/api/v1/auth/register",
        json={"email": "alice@example.com", "password": "SecurePass123", "full_name": "Alice Wang"},
    )
    assert registered.status == 201
    account = registered.json()
    assert {"user_id", "access_token", "refresh_token"} <= account.keys()
    token = account["access_token"]

    # 2. browse
    shows = await api.get(f"/api/v1/shows?city={quote('上海')}&category={quote('演唱会')}")
    assert shows.status == 200
    show = next(s for s in shows.json()["shows"] if s["show_id"] == stage.show_id)
    assert {"show_id", "title", "venue", "date"} <= show.keys()
    assert (show["title"], show["venue"]) == ("周杰伦 2026 世界巡回演唱会", "上海体育场")

    # 3. sessions and seats
    sessions = await api.get(f"/api/v1/shows/{show['show_id']}/sessions")
    session = sessions.json()["sessions"][0]
    area = session["seat_areas"][0]
    assert {"session_id", "date", "seat_areas"} <= session.keys()
    assert (area["area_id"], area["name"], area["price"], area["available"]) == (
        stage.area_id,
        "VIP A区",
        1280,
        45,
    )

    # 4. order
    with caplog.at_level(logging.INFO):
        created = await api.post(
            "/api/v1/orders",
            token=token,
            json={
                "session_id": session["session_id"],
                "seat_area_id": area["area_id"],
                "quantity": 2,
            },
        )
    assert created.status == 201, created.json()
    body = created.json()
    assert {"order_id", "total_amount", "status", "expires_at"} <= body.keys()
    assert body["total_amount"] == 2560
    assert body["status"] == "pending_payment"
    assert body["expires_at"].endswith("Z")
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    assert created.header("Content-Type") == "application/json"
    lines = [r.getMessage() for r in caplog.records]
    assert f"CreateOrder started user={account['user_id']}" in lines
    assert any(line.startswith("Calling Identity.GetProfile") for line in lines)
    assert "Calling Catalog.CheckAvailability" in lines
    assert await available(api, stage) == 43

    # 5. pay
    paid_answer = await api.post(
        f"/api/v1/orders/{body['order_id']}/pay",
        token=token,
        json={"payment_method": "alipay", "payment_token": "alipay_token_xxx"},
    )
    assert paid_answer.status == 200, paid_answer.json()
    receipt = paid_answer.json()
    assert (receipt["order_id"], receipt["status"]) == (body["order_id"], "paid")
    assert len(receipt["tickets"]) == 2
    assert len({t["ticket_id"] for t in receipt["tickets"]}) == 2
    for ticket in receipt["tickets"]:
        assert {"ticket_id", "qr_code"} <= ticket.keys()
        # Absolute, under the public URL (here the gateway's own address, as nothing is set).
        base = "http://127.0.0.1:8000"
        link = f"{base}/api/v1/tickets/{ticket['ticket_id']}/qr.png?sig="
        assert ticket["qr_code"].startswith(link)
        image = await api.get(ticket["qr_code"].removeprefix(base), token=None)  # no sign-in
        assert image.status == 200
        assert image.header("Content-Type") == "image/png"
        assert image.body.startswith(PNG_MAGIC)
    assert await available(api, stage) == 43  # sold now, still not available

    details = (await api.get(f"/api/v1/orders/{body['order_id']}", token=token)).json()
    assert details["status"] == "paid"
    assert [(h["from_status"], h["to_status"]) for h in details["history"]] == [
        (None, "created"),
        ("created", "pending_payment"),
        ("pending_payment", "paid"),
    ]
    assert [t["ticket_id"] for t in details["tickets"]] == [
        t["ticket_id"] for t in receipt["tickets"]
    ]


# -- placing orders -------------------------------------------------------------------------


async def test_an_order_carries_its_items_currency_and_creation_time(
    api: Api, stage: Stage, alice: str
) -> None:
    body = (await order(api, stage, alice, 3)).json()
    assert body["currency"] == "CNY"
    assert body["items"] == [
        {
            "session_id": stage.session_id,
            "seat_area_id": stage.area_id,
            "area_name": "VIP A区",
            "quantity": 3,
            "unit_price": 1280,
        }
    ]
    assert body["total_amount"] == 3840
    assert datetime.fromisoformat(body["created_at"]) <= datetime.fromisoformat(body["expires_at"])


async def test_money_stays_exact_for_fractional_prices(api: Api, alice: str) -> None:
    stage = await make_stage(api, price=99.95)
    created = await order(api, stage, alice, 3)
    assert b'"total_amount":299.85' in created.body


async def test_a_sold_out_area_is_refused_with_what_is_left(api: Api, alice: str, bob: str) -> None:
    stage = await make_stage(api, capacity=3)
    await placed(api, stage, alice, 3)
    refused = await order(api, stage, bob, 1)
    assert refused.status == 409
    problem = refused.json()
    assert (problem["code"], problem["available"]) == ("insufficient_inventory", 0)
    assert refused.header("Content-Type") == "application/problem+json"


async def test_asking_for_more_seats_than_are_left_says_how_many_are(
    api: Api, alice: str, bob: str
) -> None:
    stage = await make_stage(api, capacity=5)
    await placed(api, stage, alice, 4)
    refused = await order(api, stage, bob, 2)
    assert (refused.status, refused.json()["available"]) == (409, 1)
    assert (await order(api, stage, bob, 1)).status == 201


async def test_quantity_must_be_within_the_sessions_per_user_limit(
    api: Api, stage: Stage, alice: str
) -> None:
    too_many = await order(api, stage, alice, 5)
    assert (too_many.status, too_many.json()["code"]) == (422, "invalid_quantity")
    assert too_many.json()["limit"] == 4
    assert (await order(api, stage, alice, 0)).status == 422
    assert await available(api, stage) == 45


async def test_the_per_user_limit_counts_the_buyers_live_orders(
    api: Api, stage: Stage, alice: str, bob: str
) -> None:
    first = await placed(api, stage, alice, 3)
    refused = await order(api, stage, alice, 2)
    assert (refused.status, refused.json()["code"]) == (409, "per_user_limit_exceeded")
    assert (refused.json()["limit"], refused.json()["already_ordered"]) == (4, 3)
    assert (await order(api, stage, bob, 2)).status == 201  # per buyer
    await api.post(f"/api/v1/orders/{first}/cancel", token=alice)
    assert (await order(api, stage, alice, 4)).status == 201  # a cancelled order frees it
    assert await available(api, stage) == 45 - 2 - 4


async def test_a_configured_per_user_limit_applies(api: Api, alice: str) -> None:
    stage = await make_stage(api, per_user_limit=1)
    refused = await order(api, stage, alice, 2)
    assert (refused.status, refused.json()["limit"]) == (422, 1)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"seat_area_id": "a", "quantity": 1}, 422, "validation_error"),
        ({"session_id": "s", "seat_area_id": "a", "quantity": "two"}, 422, "validation_error"),
        ({"session_id": "s", "seat_area_id": "a", "quantity": 1, "x": 1}, 422, "validation_error"),
        ({"session_id": "s p a c e", "seat_area_id": "a", "quantity": 1}, 422, "validation_error"),
        ({"session_id": "nope", "seat_area_id": "nope", "quantity": 1}, 404, "seat_area_not_found"),
    ],
)
async def test_bad_order_requests_get_clear_problems(
    api: Api, alice: str, body: dict[str, Any], status: int, code: str
) -> None:
    answer = await api.post("/api/v1/orders", token=alice, json=body)
    assert (answer.status, answer.json()["code"]) == (status, code)


async def test_malformed_json_is_a_400(api: Api, alice: str) -> None:
    answer = await api.post(
        "/api/v1/orders",
        token=alice,
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert (answer.status, answer.json()["code"]) == (400, "malformed_json")


async def test_ordering_needs_a_signed_in_buyer(api: Api, stage: Stage) -> None:
    answer = await order(api, stage, token="")
    assert answer.status == 401
    assert (await order(api, stage, "not-a-token")).status == 401


async def test_an_area_whose_show_is_not_on_sale_is_refused(api: Api, alice: str) -> None:
    stage = await make_stage(api)
    hidden = await api.patch(
        f"/api/v1/admin/shows/{stage.show_id}", token=stage.admin, json={"status": "off_sale"}
    )
    assert hidden.status == 200, hidden.json()
    refused = await order(api, stage, alice, 1)
    assert (refused.status, refused.json()["code"]) == (409, "not_on_sale")
    assert await available(api, stage) == 45


# -- idempotency ----------------------------------------------------------------------------


async def test_the_same_idempotency_key_and_body_return_the_same_order(
    api: Api, stage: Stage, alice: str
) -> None:
    key = {"Idempotency-Key": "checkout-7"}
    first = await order(api, stage, alice, 2, headers=key)
    again = await order(api, stage, alice, 2, headers=key)
    assert first.status == 201
    assert again.status == 200
    assert again.header("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert await available(api, stage) == 43
    listed = (await api.get("/api/v1/orders", token=alice)).json()
    assert listed["total"] == 1


async def test_the_same_idempotency_key_with_another_body_is_refused(
    api: Api, stage: Stage, alice: str
) -> None:
    key = {"Idempotency-Key": "checkout-7"}
    await order(api, stage, alice, 2, headers=key)
    reused = await order(api, stage, alice, 3, headers=key)
    assert (reused.status, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert await available(api, stage) == 43


async def test_idempotency_keys_belong_to_one_buyer(
    api: Api, stage: Stage, alice: str, bob: str
) -> None:
    key = {"Idempotency-Key": "checkout-7"}
    first = (await order(api, stage, alice, 2, headers=key)).json()
    other = await order(api, stage, bob, 2, headers=key)
    assert other.status == 201
    assert other.json()["order_id"] != first["order_id"]


# -- reading and cancelling -----------------------------------------------------------------


async def test_buyers_list_their_own_orders_newest_first_page_by_page(
    api: Api, stage: Stage, alice: str, bob: str
) -> None:
    mine = [await placed(api, stage, alice, 1) for _ in range(3)]
    await placed(api, stage, bob, 1)
    first = (await api.get("/api/v1/orders?page_size=2", token=alice)).json()
    second = (await api.get("/api/v1/orders?page_size=2&page=2", token=alice)).json()
    assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
    listed = [o["order_id"] for o in first["orders"] + second["orders"]]
    assert sorted(listed) == sorted(mine)
    assert (await api.get("/api/v1/orders?page_size=1000", token=alice)).status == 422


async def test_another_buyers_order_is_not_found_but_an_admin_sees_it(
    api: Api, stage: Stage, alice: str, bob: str
) -> None:
    order_id = await placed(api, stage, alice)
    for answer in (
        await api.get(f"/api/v1/orders/{order_id}", token=bob),
        await api.post(f"/api/v1/orders/{order_id}/cancel", token=bob),
        await pay(api, order_id, bob),
        await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=bob),
    ):
        assert (answer.status, answer.json()["code"]) == (404, "order_not_found")
    assert (await api.get(f"/api/v1/orders/{order_id}", token=stage.admin)).status == 200
    assert (await api.get("/api/v1/orders/unknown", token=alice)).status == 404


async def test_cancelling_a_pending_order_returns_its_seats(
    api: Api, stage: Stage, alice: str
) -> None:
    order_id = await placed(api, stage, alice, 2)
    cancelled = await api.post(f"/api/v1/orders/{order_id}/cancel", token=alice)
    assert cancelled.status == 200
    assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == ("cancelled", "user")
    assert await available(api, stage) == 45
    again = await api.post(f"/api/v1/orders/{order_id}/cancel", token=alice)
    assert (again.status, again.json()["code"]) == (409, "invalid_state_transition")
    assert again.json()["order_status"] == "cancelled"
    refused = await pay(api, order_id, alice)
    assert (refused.status, refused.json()["order_status"]) == (409, "cancelled")


async def test_a_paid_order_cannot_be_cancelled(api: Api, stage: Stage, alice: str) -> None:
    receipt = await paid(api, stage, alice)
    refused = await api.post(f"/api/v1/orders/{receipt['order_id']}/cancel", token=alice)
    assert (refused.status, refused.json()["order_status"]) == (409, "paid")


async def test_admins_list_every_order_and_filter_them(
    api: Api, stage: Stage, alice: str, bob: str
) -> None:
    await paid(api, stage, alice, 1)
    await placed(api, stage, bob, 1)
    every = (await api.get("/api/v1/admin/orders", token=stage.admin)).json()
    paid_only = (await api.get("/api/v1/admin/orders?status=paid", token=stage.admin)).json()
    assert every["total"] == 2
    assert [o["status"] for o in paid_only["orders"]] == ["paid"]
    assert (await api.get("/api/v1/admin/orders", token=alice)).status == 403


# -- paying ---------------------------------------------------------------------------------


async def test_a_declined_payment_is_a_402_and_the_order_stays_payable(
    api: Api, stage: Stage, alice: str
) -> None:
    order_id = await placed(api, stage, alice)
    declined = await pay(api, order_id, alice, "decline_insufficient_funds")
    assert declined.status == 402
    assert (declined.json()["code"], declined.json()["reason"]) == (
        "payment_declined",
        "insufficient_funds",
    )
    current = (await api.get(f"/api/v1/orders/{order_id}", token=alice)).json()
    assert current["status"] == "pending_payment"
    assert (await pay(api, order_id, alice)).json()["status"] == "paid"


async def test_a_provider_timeout_leaves_the_order_unpaid_and_a_retry_charges_once(
    api: Api, stage: Stage, alice: str
) -> None:
    order_id = await placed(api, stage, alice)
    timed_out = await pay(api, order_id, alice, "timeout_slow_bank")
    assert (timed_out.status, timed_out.json()["code"]) == (504, "payment_timeout")
    current = (await api.get(f"/api/v1/orders/{order_id}", token=alice)).json()
    assert (current["status"], current["tickets"]) == ("pending_payment", [])
    retried = await pay(api, order_id, alice, "timeout_slow_bank")
    assert retried.status == 200, retried.json()
    assert len(retried.json()["tickets"]) == 2


async def test_an_unreachable_provider_is_a_502_and_nothing_changes(
    api: Api, stage: Stage, alice: str
) -> None:
    order_id = await placed(api, stage, alice)
    failed = await pay(api, order_id, alice, "unavailable")
    assert (failed.status, failed.json()["code"]) == (502, "payment_provider_unavailable")
    assert (await pay(api, order_id, alice)).status == 200


async def test_paying_twice_with_one_idempotency_key_returns_the_first_result(
    api: Api, stage: Stage, alice: str
) -> None:
    order_id = await placed(api, stage, alice)
    key = {"Idempotency-Key": "pay-1"}
    first = await pay(api, order_id, alice, headers=key)
    again = await pay(api, order_id, alice, headers=key)
    assert (first.status, again.status) == (200, 200)
    assert again.json() == first.json()
    other_body = await pay(api, order_id, alice, "another_token", headers=key)
    assert (other_body.status, other_body.json()["code"]) == (422, "idempotency_key_reused")
    without_key = await pay(api, order_id, alice)
    assert (without_key.status, without_key.json()["code"]) == (409, "invalid_state_transition")
    assert without_key.json()["order_status"] == "paid"


@pytest.mark.parametrize(
    "body",
    [
        {"payment_method": "bitcoin", "payment_token": "x"},
        {"payment_method": "alipay", "payment_token": ""},
        {"payment_method": "alipay"},
    ],
)
async def test_bad_payment_requests_are_422(
    api: Api, stage: Stage, alice: str, body: dict[str, Any]
) -> None:
    order_id = await placed(api, stage, alice)
    answer = await api.post(f"/api/v1/orders/{order_id}/pay", token=alice, json=body)
    assert answer.status == 422


async def test_every_payment_method_is_accepted(api: Api, stage: Stage, alice: str) -> None:
    for method in ("alipay", "wechat_pay", "card"):
        order_id = await placed(api, stage, alice, 1)
        answer = await api.post(
            f"/api/v1/orders/{order_id}/pay",
            token=alice,
            json={"payment_method": method, "payment_token": f"{method}_ok"},
        )
        assert answer.json()["payment_method"] == method


# -- tickets --------------------------------------------------------------------------------


async def test_ticket_images_open_for_their_owner_or_their_signed_link_only(
    api: Api, stage: Stage, alice: str, bob: str
) -> None:
    ticket = (await paid(api, stage, alice))["tickets"][0]
    bare = f"/api/v1/tickets/{ticket['ticket_id']}/qr.png"
    assert (await api.get(bare, token=alice)).body.startswith(PNG_MAGIC)
    assert (await api.get(bare, token=stage.admin)).status == 200
    assert (await api.get(bare, token=bob)).status == 404
    assert (await api.get(bare)).status == 401
    assert (await api.get(bare + "?sig=forged")).status == 401
    other = (await paid(api, stage, bob, 1))["tickets"][0]
    borrowed = bare + "?sig=" + other["qr_code"].split("sig=")[1]
    assert (await api.get(borrowed)).status == 401
    assert (await api.get("/api/v1/tickets/nope/qr.png", token=alice)).status == 404


async def test_ticket_payloads_verify_offline_with_the_published_key(
    api: Api, stage: Stage, alice: str
) -> None:
    receipt = await paid(api, stage, alice)
    key = (await api.get("/api/v1/tickets/signing-key", token=alice)).json()
    assert key["algorithm"] == "Ed25519"
    scanner = TicketVerifier.from_pem(key["public_key_pem"].encode())
    raw = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    assert (
        raw.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
        .strip()
        == key["public_key_pem"]
    )
    details = (await api.get(f"/api/v1/orders/{receipt['order_id']}", token=alice)).json()
    seats = set()
    for ticket in details["tickets"]:
        claims = scanner.verify(ticket["qr_payload"])
        assert (claims.ticket_id, claims.order_id) == (ticket["ticket_id"], receipt["order_id"])
        assert (claims.session_id, claims.area_id) == (stage.session_id, stage.area_id)
        seats.add(claims.seat_number)
    assert seats == {1, 2}


# -- check-in -------------------------------------------------------------------------------


async def check_in(api: Api, token: str, payload: str) -> Any:
    return await api.post("/api/v1/admin/checkins", token=token, json={"payload": payload})


async def payloads(api: Api, order_id: str, token: str) -> list[str]:
    details = (await api.get(f"/api/v1/orders/{order_id}", token=token)).json()
    return [t["qr_payload"] for t in details["tickets"]]


async def test_a_ticket_checks_in_once_then_is_already_used(
    api: Api, stage: Stage, alice: str
) -> None:
    receipt = await paid(api, stage, alice)
    first, second = await payloads(api, receipt["order_id"], alice)
    valid = (await check_in(api, stage.admin, first)).json()
    assert valid["result"] == "valid"
    assert valid["ticket_id"] == receipt["tickets"][0]["ticket_id"]
    used = (await check_in(api, stage.admin, first)).json()
    assert (used["result"], used["checked_in_at"]) == ("already_used", valid["checked_in_at"])
    assert (await check_in(api, stage.admin, second)).json()["result"] == "valid"
    details = (await api.get(f"/api/v1/orders/{receipt['order_id']}", token=alice)).json()
    assert details["tickets"][0]["checked_in_at"] == valid["checked_in_at"]


@pytest.mark.parametrize(
    "forge",
    [
        lambda p: p[:-3] + ("AAA" if not p.endswith("AAA") else "BBB"),
        lambda p: "MQT1." + base64.urlsafe_b64encode(orjson.dumps({"t": "x"})).decode() + ".AAAA",
        lambda p: "https://cdn.example.com/qr/ticket-001.png",
    ],
)
async def test_forged_payloads_are_reported_as_forged(
    api: Api, stage: Stage, alice: str, forge: Any
) -> None:
    receipt = await paid(api, stage, alice, 1)
    (genuine,) = await payloads(api, receipt["order_id"], alice)
    answer = await check_in(api, stage.admin, forge(genuine))
    assert answer.status == 200
    assert answer.json()["result"] == "forged"
    assert (await check_in(api, stage.admin, genuine)).json()["result"] == "valid"


async def test_only_staff_can_check_tickets_in(api: Api, stage: Stage, alice: str) -> None:
    receipt = await paid(api, stage, alice, 1)
    (payload,) = await payloads(api, receipt["order_id"], alice)
    assert (await check_in(api, alice, payload)).status == 403
    assert (await api.post("/api/v1/admin/checkins", token=stage.admin, json={})).status == 422


# -- refunds --------------------------------------------------------------------------------


async def test_an_approved_refund_returns_money_seats_and_voids_the_tickets(
    api: Api, stage: Stage, alice: str
) -> None:
    receipt = await paid(api, stage, alice, 2)
    order_id = receipt["order_id"]
    (first, _) = await payloads(api, order_id, alice)
    assert await available(api, stage) == 43

    asked = await api.post(
        f"/api/v1/orders/{order_id}/refund-requests", token=alice, json={"reason": "sick"}
    )
    assert asked.status == 201, asked.json()
    request = asked.json()
    assert (request["status"], request["amount"], request["reason"]) == ("pending", 2560, "sick")
    again = await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=alice)
    assert (again.status, again.json()["code"]) == (409, "refund_already_requested")

    pending = await api.get("/api/v1/admin/refund-requests?status=pending", token=stage.admin)
    assert [r["refund_request_id"] for r in pending.json()["refund_requests"]] == [
        request["refund_request_id"]
    ]
    rid = request["refund_request_id"]
    approved = await api.post(f"/api/v1/admin/refund-requests/{rid}/approve", token=stage.admin)
    assert approved.status == 200, approved.json()
    decision = approved.json()
    assert (decision["status"], decision["order_status"], decision["refund_completed"]) == (
        "approved",
        "refunded",
        True,
    )
    assert await available(api, stage) == 45
    details = (await api.get(f"/api/v1/orders/{order_id}", token=alice)).json()
    assert details["status"] == "refunded"
    assert {t["status"] for t in details["tickets"]} == {"void"}
    assert details["history"][-1]["to_status"] == "refunded"
    assert (await check_in(api, stage.admin, first)).json()["result"] == "refunded"

    twice = await api.post(f"/api/v1/admin/refund-requests/{rid}/approve", token=stage.admin)
    assert (twice.status, twice.json()["order_status"]) == (200, "refunded")
    rejected_late = await api.post(f"/api/v1/admin/refund-requests/{rid}/reject", token=stage.admin)
    assert (rejected_late.status, rejected_late.json()["code"]) == (409, "invalid_state_transition")
    new_request = await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=alice)
    assert (new_request.status, new_request.json()["order_status"]) == (409, "refunded")


async def test_a_void_tickets_qr_code_is_no_longer_served(
    api: Api, stage: Stage, alice: str
) -> None:
    receipt = await paid(api, stage, alice, 1)
    order_id = receipt["order_id"]
    link = receipt["tickets"][0]["qr_code"].removeprefix("http://127.0.0.1:8000")
    assert (await api.get(link)).status == 200
    asked = await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=alice)
    rid = asked.json()["refund_request_id"]
    approved = await api.post(f"/api/v1/admin/refund-requests/{rid}/approve", token=stage.admin)
    assert approved.status == 200, approved.json()

    gone = await api.get(link)
    assert (gone.status, gone.json()["code"]) == (410, "ticket_void")
    ticket_id = receipt["tickets"][0]["ticket_id"]
    owner = await api.get(f"/api/v1/tickets/{ticket_id}/qr.png", token=alice)
    assert owner.status == 410


async def test_a_refund_of_a_used_ticket_needs_the_organisers_explicit_word(
    api: Api, stage: Stage, alice: str
) -> None:
    receipt = await paid(api, stage, alice, 2)
    order_id = receipt["order_id"]
    (first, _) = await payloads(api, order_id, alice)
    assert (await check_in(api, stage.admin, first)).json()["result"] == "valid"
    asked = await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=alice)
    rid = asked.json()["refund_request_id"]
    approve = f"/api/v1/admin/refund-requests/{rid}/approve"

    refused = await api.post(approve, token=stage.admin)
    assert (refused.status, refused.json()["code"]) == (409, "tickets_used")
    assert refused.json()["ticket_ids"] == [receipt["tickets"][0]["ticket_id"]]
    assert await available(api, stage) == 43  # nothing went back on sale
    order = (await api.get(f"/api/v1/orders/{order_id}", token=alice)).json()
    assert order["status"] == "paid"

    forced = await api.post(approve, token=stage.admin, json={"refund_used_tickets": True})
    assert forced.status == 200, forced.json()
    assert forced.json()["order_status"] == "refunded"


async def test_a_rejected_refund_keeps_the_order_paid_and_may_be_asked_again(
    api: Api, stage: Stage, alice: str
) -> None:
    receipt = await paid(api, stage, alice, 1)
    order_id = receipt["order_id"]
    rid = (await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=alice)).json()[
        "refund_request_id"
    ]
    rejected = await api.post(
        f"/api/v1/admin/refund-requests/{rid}/reject",
        token=stage.admin,
        json={"note": "non-refundable"},
    )
    assert rejected.status == 200
    assert (rejected.json()["status"], rejected.json()["note"]) == ("rejected", "non-refundable")
    details = (await api.get(f"/api/v1/orders/{order_id}", token=alice)).json()
    assert details["status"] == "paid"
    assert {t["status"] for t in details["tickets"]} == {"valid"}
    approve_late = await api.post(f"/api/v1/admin/refund-requests/{rid}/approve", token=stage.admin)
    assert approve_late.status == 409
    assert (await api.post(f"/api/v1/orders/{order_id}/refund-requests", token=alice)).status == 201


async def test_only_paid_orders_before_their_session_can_ask_for_a_refund(
    api: Api, alice: str
) -> None:
    stage = await make_stage(api)
    pending = await placed(api, stage, alice, 1)
    refused = await api.post(f"/api/v1/orders/{pending}/refund-requests", token=alice)
    assert (refused.status, refused.json()["order_status"]) == (409, "pending_payment")
    started = await make_stage(api, starts_in=timedelta(days=30))
    receipt = await paid(api, started, alice, 1)
    moved = await api.patch(
        f"/api/v1/admin/sessions/{started.session_id}",
        token=started.admin,
        json={
            "starts_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "ends_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        },
    )
    assert moved.status == 200, moved.json()
    late = await api.post(f"/api/v1/orders/{receipt['order_id']}/refund-requests", token=alice)
    assert (late.status, late.json()["code"]) == (409, "refund_window_closed")


async def test_refund_administration_needs_an_admin(api: Api, stage: Stage, alice: str) -> None:
    assert (await api.get("/api/v1/admin/refund-requests", token=alice)).status == 403
    assert (await api.post("/api/v1/admin/refund-requests/x/approve", token=alice)).status == 403
    missing = await api.post("/api/v1/admin/refund-requests/x/approve", token=stage.admin)
    assert (missing.status, missing.json()["code"]) == (404, "refund_request_not_found")
    bad_filter = await api.get("/api/v1/admin/refund-requests?status=maybe", token=stage.admin)
    assert bad_filter.status == 422
