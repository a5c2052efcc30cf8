"""Sold out, answered at the edge: the gateway repeats Booking's sold-out refusal for a moment.

Booking marks its 409 ``insufficient_inventory`` with nothing left as shareable
(``Marquee-Refusal-Max-Age``); the gateway answers the identical attempts that follow itself,
after authenticating them, and never for a request with an Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager

from marquee.compose import all_in_one
from marquee.gateway.app import Gateway
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from tests.e2e.conftest import Api
from tests.e2e.test_booking_api import make_stage, order, placed, register


def gateway_of(api: Api) -> Gateway:
    gateway = api.transport.app
    assert isinstance(gateway, Gateway)
    return gateway


async def test_after_a_sell_out_identical_attempts_are_refused_by_the_gateway(api: Api) -> None:
    stage = await make_stage(api, capacity=2)
    _, alice = await register(api, "alice@example.com")
    _, bob = await register(api, "bob@example.com")
    _, carol = await register(api, "carol@example.com")
    await placed(api, stage, alice, 2)
    first = await order(api, stage, bob, 1)  # Booking refuses, and marks it
    served = gateway_of(api).refusals.served

    second = await order(api, stage, carol, 1, headers={"X-Request-ID": "carol-attempt-1"})

    assert gateway_of(api).refusals.served == served + 1
    assert (first.status, second.status) == (409, 409)
    problem = second.json()
    assert (problem["code"], problem["available"]) == ("insufficient_inventory", 0)
    assert problem["request_id"] == "carol-attempt-1"
    assert second.header("X-Request-ID") == "carol-attempt-1"
    assert second.header("Content-Type") == "application/problem+json"
    assert first.header("Marquee-Refusal-Max-Age") is None
    assert second.header("Marquee-Refusal-Max-Age") is None


async def test_an_unsigned_attempt_is_still_refused_as_unauthorized(api: Api) -> None:
    stage = await make_stage(api, capacity=1)
    _, alice = await register(api, "alice@example.com")
    _, bob = await register(api, "bob@example.com")
    await placed(api, stage, alice, 1)
    await order(api, stage, bob, 1)

    anonymous = await api.post(
        "/api/v1/orders",
        json={"session_id": stage.session_id, "seat_area_id": stage.area_id, "quantity": 1},
    )

    assert anonymous.status == 401


async def test_an_idempotent_retry_is_answered_by_booking_with_the_buyers_own_order(
    api: Api,
) -> None:
    stage = await make_stage(api, capacity=1)
    _, alice = await register(api, "alice@example.com")
    _, bob = await register(api, "bob@example.com")
    created = await order(api, stage, alice, 1, headers={"Idempotency-Key": "alice-key-1"})
    await order(api, stage, bob, 1)  # sold out now, and kept
    served = gateway_of(api).refusals.served

    again = await order(api, stage, alice, 1, headers={"Idempotency-Key": "alice-key-1"})

    assert gateway_of(api).refusals.served == served
    assert again.status == 200
    assert again.json()["order_id"] == created.json()["order_id"]


async def test_a_buyer_who_cancels_can_order_again_at_once(api: Api) -> None:
    stage = await make_stage(api, capacity=1)
    _, alice = await register(api, "alice@example.com")
    _, bob = await register(api, "bob@example.com")
    order_id = await placed(api, stage, alice, 1)
    assert (await order(api, stage, bob, 1)).status == 409  # kept

    cancelled = await api.post(f"/api/v1/orders/{order_id}/cancel", token=alice)
    again = await order(api, stage, bob, 1)

    assert cancelled.status == 200
    assert again.status == 201


@pytest.fixture
async def api_without_sharing(e2e_settings: Settings) -> AsyncIterator[Api]:
    gateway = all_in_one(e2e_settings.model_copy(update={"sold_out_max_age_seconds": 0}))
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        yield Api(AsgiTransport(gateway))


async def test_a_max_age_of_zero_sends_every_attempt_to_booking(api_without_sharing: Api) -> None:
    api = api_without_sharing
    stage = await make_stage(api, capacity=1)
    _, alice = await register(api, "alice@example.com")
    _, bob = await register(api, "bob@example.com")
    await placed(api, stage, alice, 1)

    refusals = [await order(api, stage, bob, 1) for _ in range(3)]

    assert [r.status for r in refusals] == [409, 409, 409]
    assert gateway_of(api).refusals.served == 0
    assert len(gateway_of(api).refusals) == 0
