"""Many holds in one transaction (``reserve_many``), on SQLite and PostgreSQL alike: each
request answered as ``reserve`` would have answered it alone, seats handed out in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog.client import HoldRequest
from marquee.catalog.domain import (
    InsufficientInventoryError,
    InvalidInputError,
    NotFoundError,
    NotOnSaleError,
    ReservationConflictError,
    ReservationReleasedError,
    Stock,
)
from marquee.catalog.service import CatalogService
from tests.integration.catalog_support import (
    ManualClock,
    Stocked,
    held_and_sold,
    make_service,
    migrated_engine,
    private_postgres_database,
    sqlite_url,
    stock_area,
    stock_of,
)

HOLD = timedelta(minutes=15)


@pytest.fixture(scope="module")
def module_postgres() -> Iterator[str]:
    yield from private_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("module_postgres")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_url) as migrated:
        yield migrated


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog(engine: AsyncEngine, clock: ManualClock) -> CatalogService:
    return make_service(engine, clock)


@pytest.fixture
async def area(catalog: CatalogService) -> Stocked:
    return await stock_area(catalog, capacity=10)


def hold(catalog: CatalogService, area: Stocked, reservation_id: str, quantity: int) -> HoldRequest:
    return HoldRequest(
        reservation_id, area.session_id, area.area_id, quantity, catalog.clock() + HOLD
    )


async def test_a_batch_hands_out_seats_in_order_while_they_last(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    quantities = [3, 4, 4, 2, 1]

    answers = await catalog.reserve_many(
        [hold(catalog, area, f"order-{n}", q) for n, q in enumerate(quantities)]
    )

    held = [a for a in answers if isinstance(a, tuple)]
    assert [(r.reservation_id, r.available, new) for r, new in held] == [
        ("order-0", 7, True),
        ("order-1", 3, True),
        ("order-3", 1, True),
        ("order-4", 0, True),
    ]
    refused = answers[2]
    assert isinstance(refused, InsufficientInventoryError)
    assert (refused.requested, refused.available) == (4, 3)
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, reserved=10)


async def test_holds_from_a_batch_are_ordinary_holds(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    await catalog.reserve_many([hold(catalog, area, "order-1", 2), hold(catalog, area, "o-2", 1)])

    await catalog.confirm("order-1")
    await catalog.release("o-2")

    assert await held_and_sold(engine, area.area_id) == (0, 2)


async def test_a_replay_in_a_batch_answers_the_existing_hold_without_a_second(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    first = await catalog.reserve_many([hold(catalog, area, "order-1", 2)])

    again = await catalog.reserve_many(
        [hold(catalog, area, "order-1", 2), hold(catalog, area, "order-2", 1)]
    )

    assert isinstance(first[0], tuple)
    assert isinstance(again[0], tuple)
    assert (again[0][0].reservation_id, again[0][1]) == ("order-1", False)
    assert isinstance(again[1], tuple)
    assert again[1][1] is True
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, reserved=3)


async def test_each_request_gets_the_error_reserve_would_have_raised(
    catalog: CatalogService, area: Stocked
) -> None:
    closed = await stock_area(catalog, capacity=5, status="off_sale")
    await catalog.reserve_many([hold(catalog, area, "taken", 2), hold(catalog, area, "gone", 1)])
    await catalog.release("gone")
    stale = HoldRequest("late", area.session_id, area.area_id, 1, catalog.clock() - HOLD)
    nowhere = HoldRequest("lost", area.session_id, "no-such-area", 1, catalog.clock() + HOLD)

    answers = await catalog.reserve_many(
        [
            hold(catalog, area, "taken", 3),  # the same ID for other seats
            hold(catalog, area, "gone", 1),  # released already
            hold(catalog, closed, "closed", 1),
            stale,
            nowhere,
            hold(catalog, area, "fine", 1),
        ]
    )

    assert [type(a) for a in answers[:5]] == [
        ReservationConflictError,
        ReservationReleasedError,
        NotOnSaleError,
        InvalidInputError,
        NotFoundError,
    ]
    assert isinstance(answers[5], tuple)


async def test_reservation_ids_in_one_batch_must_be_distinct(
    catalog: CatalogService, area: Stocked
) -> None:
    with pytest.raises(InvalidInputError):
        await catalog.reserve_many(
            [hold(catalog, area, "twice", 1), hold(catalog, area, "twice", 1)]
        )


async def test_concurrent_batches_and_single_holds_never_oversell(
    catalog: CatalogService, engine: AsyncEngine
) -> None:
    area = await stock_area(catalog, capacity=25)
    batches = [
        catalog.reserve_many([hold(catalog, area, f"b{b}-{n}", 1) for n in range(10)])
        for b in range(4)
    ]
    singles = [
        catalog.reserve(
            reservation_id=f"s-{n}",
            session_id=area.session_id,
            area_id=area.area_id,
            quantity=1,
            expires_at=catalog.clock() + HOLD,
        )
        for n in range(10)
    ]

    outcomes = await asyncio.gather(*batches, *singles, return_exceptions=True)

    answers = [a for batch in outcomes[:4] if isinstance(batch, list) for a in batch]
    granted = sum(isinstance(a, tuple) for a in [*answers, *outcomes[4:]])
    assert granted == 25
    assert (await stock_of(engine, area.area_id))[0] == Stock(25, reserved=25)
