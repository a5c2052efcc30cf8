"""Catalog's inventory and admin use cases on a real database: SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog import repository as repo
from marquee.catalog.client import HoldRequest
from marquee.catalog.domain import (
    CapacityBelowTakenError,
    DuplicateError,
    InsufficientInventoryError,
    InvalidInputError,
    NotFoundError,
    NotOnSaleError,
    ReservationConflictError,
    ReservationReleasedError,
    Stock,
)
from marquee.catalog.models import metadata, seat_areas
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


async def reserve(
    catalog: CatalogService, area: Stocked, reservation_id: str, quantity: int
) -> tuple[int, bool]:
    held, created = await catalog.reserve(
        reservation_id=reservation_id,
        session_id=area.session_id,
        area_id=area.area_id,
        quantity=quantity,
        expires_at=catalog.clock() + HOLD,
    )
    assert held.status == "held"
    return held.available, created


# -- the schema ------------------------------------------------------------------------------


async def test_the_migration_creates_exactly_the_tables_the_models_describe(
    engine: AsyncEngine,
) -> None:
    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_the_database_refuses_to_oversell_even_for_a_buggy_caller(
    engine: AsyncEngine, area: Stocked
) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                update(seat_areas).where(seat_areas.c.id == area.area_id).values(reserved=11)
            )
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                update(seat_areas).where(seat_areas.c.id == area.area_id).values(sold=-1)
            )
    assert (await stock_of(engine, area.area_id))[0] == Stock(10)


# -- reserving ------------------------------------------------------------------------------


async def test_reserving_holds_seats_and_reports_what_is_left(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    held, created = await catalog.reserve(
        reservation_id="order-1",
        session_id=area.session_id,
        area_id=area.area_id,
        quantity=3,
        expires_at=catalog.clock() + HOLD,
    )
    assert created
    assert (held.status, held.quantity, held.available) == ("held", 3, 7)
    assert (held.unit_price, held.currency) == (Decimal(1280), "CNY")
    stock, version = await stock_of(engine, area.area_id)
    assert stock == Stock(10, reserved=3)
    assert version == 1


async def test_reserving_again_with_the_same_id_returns_the_same_hold_without_a_second(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    assert await reserve(catalog, area, "order-1", 2) == (8, True)
    assert await reserve(catalog, area, "order-1", 2) == (8, False)
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, reserved=2)


async def test_the_same_reservation_id_for_other_seats_is_a_conflict(
    catalog: CatalogService, area: Stocked
) -> None:
    await reserve(catalog, area, "order-1", 2)
    with pytest.raises(ReservationConflictError):
        await reserve(catalog, area, "order-1", 3)


async def test_asking_for_more_than_is_left_fails_and_says_how_many_are_left(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "order-1", 8)
    with pytest.raises(InsufficientInventoryError) as refused:
        await reserve(catalog, area, "order-2", 3)
    assert (refused.value.available, refused.value.requested) == (2, 3)
    # The failed attempt left nothing behind: the same ID can try again for fewer seats.
    assert await reserve(catalog, area, "order-2", 2) == (0, True)
    assert await held_and_sold(engine, area.area_id) == (10, 0)


async def test_seats_cannot_be_reserved_for_an_unknown_area_or_another_sessions_area(
    catalog: CatalogService, area: Stocked
) -> None:
    other = await stock_area(catalog, capacity=5)
    for session_id, area_id in [(area.session_id, "nope"), (other.session_id, area.area_id)]:
        with pytest.raises(NotFoundError):
            await catalog.reserve(
                reservation_id="order-x",
                session_id=session_id,
                area_id=area_id,
                quantity=1,
                expires_at=catalog.clock() + HOLD,
            )


async def test_seats_of_a_show_not_on_sale_cannot_be_reserved(catalog: CatalogService) -> None:
    for status in ("draft", "off_sale"):
        area = await stock_area(catalog, capacity=5, status=status)
        with pytest.raises(NotOnSaleError):
            await reserve(catalog, area, f"order-{status}", 1)


async def test_seats_cannot_be_reserved_before_the_sale_opens_or_after_it_closes(
    catalog: CatalogService, clock: ManualClock, area: Stocked
) -> None:
    await catalog.update_session(area.session_id, {"sale_starts_at": clock.now + timedelta(days=1)})
    with pytest.raises(NotOnSaleError):
        await reserve(catalog, area, "too-early", 1)
    clock.advance(days=2)
    assert (await reserve(catalog, area, "in-time", 1))[1]
    clock.advance(days=400)  # past the session's start, where sales end by default
    with pytest.raises(NotOnSaleError):
        await reserve(catalog, area, "too-late", 1)


async def test_a_hold_must_expire_in_the_future(catalog: CatalogService, area: Stocked) -> None:
    with pytest.raises(InvalidInputError):
        await catalog.reserve(
            reservation_id="order-1",
            session_id=area.session_id,
            area_id=area.area_id,
            quantity=1,
            expires_at=catalog.clock(),
        )


# -- confirming and releasing ----------------------------------------------------------------


async def test_confirming_turns_held_seats_into_sold_ones_once(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "order-1", 4)
    first = await catalog.confirm("order-1")
    again = await catalog.confirm("order-1")
    assert (first.status, again.status, again.available) == ("confirmed", "confirmed", 6)
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, sold=4)


async def test_releasing_a_hold_returns_its_seats_once(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "order-1", 4)
    released = await catalog.release("order-1")
    again = await catalog.release("order-1")
    assert (released.status, again.status, again.available) == ("released", "released", 10)
    assert (await stock_of(engine, area.area_id))[0] == Stock(10)


async def test_releasing_a_confirmed_reservation_refunds_the_sold_seats(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "order-1", 4)
    await catalog.confirm("order-1")
    refunded = await catalog.release("order-1")
    assert (refunded.status, refunded.available) == ("released", 10)
    assert (await stock_of(engine, area.area_id))[0] == Stock(10)


async def test_a_released_hold_cannot_be_confirmed_or_reserved_again(
    catalog: CatalogService, area: Stocked
) -> None:
    await reserve(catalog, area, "order-1", 1)
    await catalog.release("order-1")
    with pytest.raises(ReservationReleasedError) as refused:
        await catalog.confirm("order-1")
    assert refused.value.reason == "cancelled"
    with pytest.raises(ReservationReleasedError):
        await reserve(catalog, area, "order-1", 1)


async def test_unknown_reservations_are_not_found(catalog: CatalogService) -> None:
    with pytest.raises(NotFoundError):
        await catalog.confirm("nope")
    with pytest.raises(NotFoundError):
        await catalog.release("nope")


# -- expiry -----------------------------------------------------------------------------------


async def test_the_sweeper_returns_expired_holds_and_only_those(
    catalog: CatalogService, clock: ManualClock, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "expires-first", 2)
    clock.advance(minutes=10)
    await reserve(catalog, area, "expires-later", 3)
    await reserve(catalog, area, "paid", 1)
    await catalog.confirm("paid")
    clock.advance(minutes=6)  # past the first hold's 15 minutes, not the second's

    assert await catalog.release_expired() == 1
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, reserved=3, sold=1)
    with pytest.raises(ReservationReleasedError) as refused:
        await catalog.confirm("expires-first")
    assert refused.value.reason == "expired"

    clock.advance(minutes=10)
    assert await catalog.release_expired() == 1
    assert await catalog.release_expired() == 0
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, sold=1)


async def test_an_expired_hold_not_yet_swept_can_still_be_confirmed(
    catalog: CatalogService, clock: ManualClock, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "late-payment", 2)
    clock.advance(minutes=20)
    assert (await catalog.confirm("late-payment")).status == "confirmed"
    assert await catalog.release_expired() == 0
    assert (await stock_of(engine, area.area_id))[0] == Stock(10, sold=2)


async def test_the_sweeper_works_through_more_holds_than_one_batch(
    catalog: CatalogService, clock: ManualClock, engine: AsyncEngine
) -> None:
    area = await stock_area(catalog, capacity=30)
    for n in range(25):
        await reserve(catalog, area, f"order-{n}", 1)
    clock.advance(minutes=16)
    assert await catalog.release_expired(batch=7) == 25
    assert (await stock_of(engine, area.area_id))[0] == Stock(30)


# -- seat area administration -----------------------------------------------------------------


async def test_capacity_can_shrink_to_what_is_taken_but_not_below(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    await reserve(catalog, area, "held", 3)
    await reserve(catalog, area, "sold", 2)
    await catalog.confirm("sold")
    with pytest.raises(CapacityBelowTakenError) as refused:
        await catalog.update_area(area.area_id, {"capacity": 4})
    assert (refused.value.reserved, refused.value.sold) == (3, 2)
    resized = await catalog.update_area(area.area_id, {"capacity": 5, "name": "VIP 前区"})
    assert (resized.capacity, resized.available, resized.name) == (5, 0, "VIP 前区")
    assert (await stock_of(engine, area.area_id))[0] == Stock(5, reserved=3, sold=2)


async def test_a_price_change_leaves_existing_holds_at_their_price(
    catalog: CatalogService, area: Stocked
) -> None:
    await reserve(catalog, area, "before", 1)
    await catalog.update_area(area.area_id, {"price": Decimal("99.5")})
    await reserve(catalog, area, "after", 1)
    assert (await catalog.confirm("before")).unit_price == Decimal(1280)
    assert (await catalog.confirm("after")).unit_price == Decimal("99.5")
    availability = await catalog.check_availability(area.session_id, area.area_id)
    assert availability.price == Decimal("99.5")


async def test_prices_finer_than_a_fen_are_refused(catalog: CatalogService, area: Stocked) -> None:
    with pytest.raises(InvalidInputError):
        await catalog.update_area(area.area_id, {"price": Decimal("0.001")})


async def test_a_venue_name_is_unique_within_its_city(catalog: CatalogService) -> None:
    first = await catalog.create_venue(name="国家体育场", city="北京")
    with pytest.raises(DuplicateError) as refused:
        await catalog.create_venue(name="国家体育场", city="北京")
    assert refused.value.existing_id == first.venue_id
    await catalog.create_venue(name="国家体育场", city="上海")


async def test_moving_a_venue_to_another_time_zone_moves_its_sessions_local_dates(
    catalog: CatalogService, engine: AsyncEngine
) -> None:
    venue = await catalog.create_venue(name="O2 Arena", city="London")
    show = await catalog.create_show(
        title="Night Show", category="演唱会", venue_id=venue.venue_id, status="on_sale"
    )
    # 17:00 UTC is 01:00 the next day in Shanghai (the default zone), 17:00 in London.
    starts = datetime(2027, 3, 1, 17, 0, tzinfo=UTC)
    session = await catalog.create_session(
        show.show_id, starts_at=starts, ends_at=starts + timedelta(hours=2)
    )
    assert session.date == "2027-03-02 01:00"

    async def shows_on(day: date) -> list[str]:
        async with engine.connect() as conn:
            rows, _ = await repo.search_shows(
                conn, repo.ShowFilter(("on_sale",), date_from=day, date_to=day), 0, 10
            )
        return [row.show.show_id for row in rows]

    assert await shows_on(date(2027, 3, 2)) == [show.show_id]
    await catalog.update_venue(venue.venue_id, {"timezone": "Europe/London"})
    assert (await catalog.get_session_admin(session.session_id)).date == "2027-03-01 17:00"
    assert await shows_on(date(2027, 3, 2)) == []
    assert await shows_on(date(2027, 3, 1)) == [show.show_id]


async def test_the_listing_is_served_from_the_cache_until_an_admin_changes_something(
    catalog: CatalogService, engine: AsyncEngine, area: Stocked
) -> None:
    before = await catalog.browse_shows(city="上海")
    assert "周杰伦".encode() in before
    # A change behind the service's back is not seen: the listing came from the cache.
    async with engine.begin() as conn:
        await repo.update_show(conn, area.show_id, {"title": "改名"}, catalog.clock())
    assert await catalog.browse_shows(city="上海") == before
    # Any admin change invalidates every listing.
    await catalog.update_show(area.show_id, {"description": "新简介"})
    assert "改名".encode() in await catalog.browse_shows(city="上海")


# -- many holds in one transaction (reserve_many): each answered as reserve would ------


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
