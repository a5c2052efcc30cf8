"""A rush on one seat area: never oversold, every seat accounted for, on PostgreSQL and SQLite.

The requests go through the service and repository exactly as Booking's calls do, all at
once (``asyncio.gather``) over a connection pool, so the database's compare-and-swap is what
decides who gets a seat.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog.client import Reservation
from marquee.catalog.demo import load_demo_data
from marquee.catalog.domain import InsufficientInventoryError, Stock
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


@pytest.fixture(scope="module")
def module_postgres() -> Iterator[str]:
    yield from private_postgres_database()


@dataclass(frozen=True)
class Backend:
    url: str
    buyers: int  # concurrent reservations in the rush
    pool_size: int


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        # One writer at a time in SQLite: a smaller crowd proves the same and stays quick.
        return Backend(sqlite_url(tmp_path), buyers=200, pool_size=10)
    return Backend(request.getfixturevalue("module_postgres"), buyers=1000, pool_size=20)


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(backend.url, pool_size=backend.pool_size) as migrated:
        yield migrated


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog(engine: AsyncEngine, clock: ManualClock) -> CatalogService:
    return make_service(engine, clock)


@dataclass
class Rush:
    granted: dict[str, Reservation]
    refused: dict[str, int]  # reservation id -> quantity asked for


async def rush(catalog: CatalogService, area: Stocked, wants: dict[str, int]) -> Rush:
    """Everyone asks at once; returns who got seats and who was turned away."""
    expires_at = catalog.clock() + timedelta(minutes=15)

    async def buy(reservation_id: str, quantity: int) -> Reservation | None:
        try:
            held, _ = await catalog.reserve(
                reservation_id=reservation_id,
                session_id=area.session_id,
                area_id=area.area_id,
                quantity=quantity,
                expires_at=expires_at,
            )
        except InsufficientInventoryError:
            return None
        return held

    outcomes = await asyncio.gather(*(buy(rid, q) for rid, q in wants.items()))
    result = Rush({}, {})
    for (rid, quantity), held in zip(wants.items(), outcomes, strict=True):
        if held is None:
            result.refused[rid] = quantity
        else:
            assert held.quantity == quantity
            result.granted[rid] = held
    return result


async def test_a_rush_of_concurrent_reservations_never_oversells_and_counts_every_seat(
    catalog: CatalogService, engine: AsyncEngine, backend: Backend
) -> None:
    rng = random.Random(20260815)
    wants = {f"buyer-{n}": rng.randint(1, 4) for n in range(backend.buyers)}
    capacity = sum(wants.values()) // 3  # demand is three times the supply
    area = await stock_area(catalog, capacity=capacity)

    outcome = await rush(catalog, area, wants)

    granted = sum(held.quantity for held in outcome.granted.values())
    stock, version = await stock_of(engine, area.area_id)
    assert stock.reserved == granted <= capacity
    assert stock.sold == 0
    assert stock.available == capacity - granted
    assert version == len(outcome.granted)  # one compare-and-swap per granted hold
    assert await held_and_sold(engine, area.area_id) == (granted, 0)
    # Seats only ever went down, so everyone refused asked for more than is left now.
    assert outcome.refused
    assert stock.available < min(outcome.refused.values())


async def test_concurrent_replays_confirms_and_releases_keep_exact_accounts(
    catalog: CatalogService, engine: AsyncEngine, backend: Backend
) -> None:
    rng = random.Random(7)
    wants = {f"buyer-{n}": rng.randint(1, 4) for n in range(backend.buyers // 4)}
    area = await stock_area(catalog, capacity=sum(wants.values()) // 2)
    outcome = await rush(catalog, area, wants)
    ids = sorted(outcome.granted)
    pay, cancel = ids[::2], ids[1::2]

    # Payments, cancellations, duplicates of both, and replays of the reservations being
    # paid for (a replay of one being cancelled may rightly find it released), all at once.
    calls = [catalog.confirm(rid) for rid in pay + pay[: len(pay) // 2]]
    calls += [catalog.release(rid) for rid in cancel + cancel[: len(cancel) // 2]]
    replays = rush(catalog, area, {rid: wants[rid] for rid in pay[:50]})
    replayed, *_ = await asyncio.gather(replays, *calls)
    assert isinstance(replayed, Rush)
    assert not replayed.refused

    sold = sum(wants[rid] for rid in pay)
    stock, _ = await stock_of(engine, area.area_id)
    assert stock == Stock(stock.capacity, reserved=0, sold=sold)
    assert await held_and_sold(engine, area.area_id) == (0, sold)


async def test_several_sweepers_at_once_return_each_expired_hold_exactly_once(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # Separate service objects stand for separate catalog instances sharing the database.
    sweepers = [make_service(engine, clock) for _ in range(4)]
    area = await stock_area(sweepers[0], capacity=300)
    await rush(sweepers[0], area, {f"hold-{n}": 1 + n % 3 for n in range(120)})
    clock.advance(minutes=16)

    returned = await asyncio.gather(*(s.release_expired(batch=10) for s in sweepers))

    assert sum(returned) == 120
    assert (await stock_of(engine, area.area_id))[0] == Stock(300)


async def test_demo_data_loads_once_when_several_instances_start_together(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    instances = [make_service(engine, clock) for _ in range(3)]
    loaded = await asyncio.gather(*(load_demo_data(c, clock()) for c in instances))
    assert sorted(loaded) == [False, False, True]
    availability = await instances[0].check_availability("session-001", "vip-a")
    assert (availability.available, availability.price, availability.show_id) == (
        45,
        Decimal(1280),
        "show-5678",
    )
    assert availability.session_starts_at > clock()
