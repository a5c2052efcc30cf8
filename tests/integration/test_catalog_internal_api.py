"""Booking's view of Catalog: the typed CatalogClient against the real catalog app, in-process.

Runs on SQLite (the all-in-one default) and on PostgreSQL, where the app migrates into the
``catalog`` schema of a database of this module's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import update

from marquee.catalog.app import create_app
from marquee.catalog.client import CatalogClient, HoldRequest
from marquee.catalog.demo import OTHER_SHOWS
from marquee.catalog.domain import SHOW_STATUSES
from marquee.catalog.models import reservations, seat_areas
from marquee.catalog.repository import ShowFilter
from marquee.catalog.service import CatalogService
from marquee.platform.kernel import Kernel
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, ServiceError
from tests.integration.catalog_support import private_postgres_database

SEED = ("session-001", "vip-a")


@pytest.fixture(scope="module")
def module_postgres() -> Iterator[str]:
    yield from private_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    update: dict[str, Any] = {"demo_data": True}
    if request.param == "postgres":
        update["catalog_database_url"] = request.getfixturevalue("module_postgres")
    return settings.model_copy(update=update)


@pytest.fixture
async def app(catalog_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(Kernel.from_settings(catalog_settings), sweep_interval=0.05)
    async with LifespanManager(application, startup_timeout=30):
        yield application
        if catalog_settings.catalog_database_url:
            # The PostgreSQL database outlives the test: put the demo stock back as it was.
            await reset_demo_stock(application)


async def reset_demo_stock(app: FastAPI) -> None:
    async with app.state.engine.begin() as conn:
        await conn.execute(reservations.delete())
        await conn.execute(update(seat_areas).values(reserved=0, sold=0))


@pytest.fixture
def client(app: FastAPI) -> CatalogClient:
    return CatalogClient(AsgiTransport(app))


def soon(minutes: float = 15) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def test_check_availability_reports_the_seeds_area_and_logs_it(
    client: CatalogClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="marquee.catalog")
    seen = await client.check_availability(*SEED)
    assert (seen.show_id, seen.show_title, seen.venue) == (
        "show-5678",
        "周杰伦 2026 世界巡回演唱会",
        "上海体育场",
    )
    assert (seen.area_name, seen.price, seen.currency) == ("VIP A区", Decimal(1280), "CNY")
    assert (seen.capacity, seen.available, seen.on_sale, seen.per_user_limit) == (45, 45, True, 4)
    assert seen.session_starts_at > datetime.now(UTC)
    logged = [r.getMessage() for r in caplog.records if r.name == "marquee.catalog"]
    assert logged[-1].startswith("CheckAvailability session=session-001 available=45")


async def test_reserving_answers_201_then_200_with_the_same_hold_on_replay(
    app: FastAPI, client: CatalogClient
) -> None:
    body = {
        "reservation_id": "order-9999",
        "session_id": "session-001",
        "area_id": "vip-a",
        "quantity": 2,
        "expires_at": soon().isoformat(),
    }
    payload, headers = orjson.dumps(body), [("content-type", "application/json")]
    path = "/internal/reservations"
    first = await client.transport.request("POST", path, body=payload, headers=headers)
    again = await client.transport.request("POST", path, body=payload, headers=headers)
    assert (first.status, again.status) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["unit_price"] == 1280
    assert first.json()["available"] == 43
    assert (await client.check_availability(*SEED)).available == 43


async def test_the_client_holds_confirms_and_releases_seats(client: CatalogClient) -> None:
    held = await client.reserve("order-1", *SEED, 2, soon())
    assert (held.status, held.quantity, held.available, held.unit_price) == (
        "held",
        2,
        43,
        Decimal(1280),
    )
    paid = await client.confirm("order-1")
    assert (paid.status, paid.available) == ("confirmed", 43)
    seen = await client.check_availability(*SEED)
    assert (seen.reserved, seen.sold) == (0, 2)
    refunded = await client.release("order-1")
    assert (refunded.status, refunded.available) == ("released", 45)
    assert (await client.release("order-1")).available == 45


async def test_inventory_errors_arrive_with_their_stable_codes(client: CatalogClient) -> None:
    await client.reserve("order-1", *SEED, 4, soon())

    async def code_of(call: Any) -> tuple[int, str | None, Any]:
        with pytest.raises(ServiceError) as failed:
            await call
        return failed.value.status, failed.value.code, failed.value.body

    status, code, body = await code_of(client.reserve("order-2", *SEED, 42, soon()))
    assert (status, code, body["available"]) == (409, "insufficient_inventory", 41)
    assert (await code_of(client.reserve("order-1", *SEED, 3, soon())))[:2] == (
        409,
        "reservation_conflict",
    )
    assert (await code_of(client.reserve("order-3", "session-001", "nope", 1, soon())))[:2] == (
        404,
        "not_found",
    )
    assert (await code_of(client.confirm("nope")))[:2] == (404, "not_found")
    assert (await code_of(client.release("nope")))[:2] == (404, "not_found")
    await client.release("order-1")
    status, code, body = await code_of(client.confirm("order-1"))
    assert (status, code, body["reason"]) == (409, "reservation_released", "cancelled")
    assert (await code_of(client.reserve("order-4", *SEED, 1, soon(-1))))[:2] == (
        422,
        "validation_error",
    )


async def test_seats_of_a_show_that_is_not_on_sale_cannot_be_held(
    app: FastAPI, client: CatalogClient
) -> None:
    catalog: CatalogService = app.state.catalog
    await catalog.update_show("show-5678", {"status": "off_sale"})
    try:
        assert not (await client.check_availability(*SEED)).on_sale
        with pytest.raises(ServiceError) as refused:
            await client.reserve("order-1", *SEED, 1, soon())
        assert (refused.value.status, refused.value.code) == (409, "not_on_sale")
    finally:
        await catalog.update_show("show-5678", {"status": "on_sale"})


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 0},
        {"quantity": "two"},
        {"expires_at": "2026-08-15T19:30:00"},
        {"reservation_id": "has space"},
        {"extra": True},
    ],
)
async def test_malformed_reservations_are_422_problems(
    client: CatalogClient, change: dict[str, Any]
) -> None:
    body = {
        "reservation_id": "order-1",
        "session_id": "session-001",
        "area_id": "vip-a",
        "quantity": 1,
        "expires_at": soon().isoformat(),
    } | change
    with pytest.raises(ServiceError) as refused:
        await client.call("POST", "/internal/reservations", json=body)
    assert (refused.value.status, refused.value.code) == (422, "validation_error")


async def test_the_apps_sweeper_returns_an_expired_hold_to_stock(client: CatalogClient) -> None:
    await client.reserve("short-hold", *SEED, 3, soon(minutes=0.01))
    deadline = time.monotonic() + 10
    while (await client.check_availability(*SEED)).available != 45:
        assert time.monotonic() < deadline, "the hold was never returned"
        await asyncio.sleep(0.05)
    with pytest.raises(ServiceError) as refused:
        await client.confirm("short-hold")
    assert refused.value.body["reason"] == "expired"


async def test_restarting_does_not_load_the_demo_data_twice(
    app: FastAPI, catalog_settings: Settings
) -> None:
    again = create_app(Kernel.from_settings(catalog_settings))
    async with LifespanManager(again, startup_timeout=30):
        page = await again.state.catalog.list_shows_admin(
            ShowFilter(SHOW_STATUSES), page=1, page_size=100
        )
    assert page.total == 1 + len(OTHER_SHOWS)


async def test_a_batch_of_holds_gets_one_answer_each_in_order(client: CatalogClient) -> None:
    await client.reserve("order-1", *SEED, 2, soon())
    holds = [
        HoldRequest("order-1", *SEED, 2, soon()),  # a replay
        HoldRequest("order-2", *SEED, 40, soon()),
        HoldRequest("order-3", *SEED, 4, soon()),  # 3 left
        HoldRequest("order-4", *SEED, 3, soon()),
        HoldRequest("order-5", "session-001", "nowhere", 1, soon()),
    ]

    answers = await client.reserve_many(holds)

    assert [(a.reservation_id, a.status) for a in answers] == [
        ("order-1", 200),
        ("order-2", 201),
        ("order-3", 409),
        ("order-4", 201),
        ("order-5", 404),
    ]
    assert answers[1].reservation is not None
    assert answers[1].reservation.available == 3
    assert answers[2].problem is not None
    assert (answers[2].problem["code"], answers[2].problem["available"]) == (
        "insufficient_inventory",
        3,
    )
    assert answers[4].problem is not None
    assert answers[4].problem["code"] == "not_found"
    assert (await client.check_availability(*SEED)).available == 0


async def test_a_malformed_batch_is_one_422_problem(client: CatalogClient) -> None:
    twice = {
        "reservation_id": "same",
        "session_id": "session-001",
        "area_id": "vip-a",
        "quantity": 1,
        "expires_at": soon().isoformat(),
    }
    for body in ({"reservations": []}, {"reservations": [twice, twice]}):
        answer = await client.transport.request(
            "POST",
            "/internal/reservations/batch",
            body=orjson.dumps(body),
            headers=[("content-type", "application/json")],
        )
        assert answer.status == 422, body
        assert answer.json()["code"] == "validation_error"
