"""Shared pieces of the catalog's integration tests: databases, a manual clock, a stocked area."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog.app import MIGRATIONS
from marquee.catalog.domain import Stock
from marquee.catalog.models import reservations, seat_areas
from marquee.catalog.service import CatalogService
from marquee.platform.cache.memory import MemoryCache
from marquee.platform.db import create_engine
from marquee.platform.migrations import upgrade
from tests import servers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    """The service's clock, moved only by the test."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def private_postgres_database() -> Iterator[str]:
    """Body of a module-scoped fixture: a PostgreSQL database of the module's own."""
    url = str(servers.run(servers.create_postgres_database()))
    try:
        yield url
    finally:
        servers.run(servers.drop_postgres_database(url))


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'catalog.db'}"


@asynccontextmanager
async def migrated_engine(url: str, pool_size: int = 10) -> AsyncIterator[AsyncEngine]:
    """The catalog's migrated tables; on PostgreSQL in a schema of their own, dropped after."""
    schema = servers.unique("catalog_test_")
    engine = create_engine(url, schema=schema, pool_size=pool_size)
    try:
        await upgrade(engine, MIGRATIONS, schema=schema)
        yield engine
    finally:
        if url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


def make_service(engine: AsyncEngine, clock: ManualClock) -> CatalogService:
    return CatalogService(engine, MemoryCache(), clock=clock)


@dataclass(frozen=True)
class Stocked:
    show_id: str
    session_id: str
    area_id: str


async def stock_area(
    service: CatalogService,
    capacity: int,
    *,
    status: str = "on_sale",
    price: Decimal = Decimal(1280),
    city: str = "上海",
) -> Stocked:
    """A show on sale with one session a year away and one seat area of ``capacity`` seats."""
    now = service.clock()
    show = await service.create_show(
        title="周杰伦 2026 世界巡回演唱会",
        category="演唱会",
        venue="上海体育场",
        city=city,
        status=status,  # type: ignore[arg-type]
    )
    session = await service.create_session(
        show.show_id,
        starts_at=now + timedelta(days=365),
        ends_at=now + timedelta(days=365, hours=3),
    )
    area = await service.create_area(
        session.session_id, name="VIP A区", price=price, capacity=capacity
    )
    return Stocked(show.show_id, session.session_id, area.area_id)


async def stock_of(engine: AsyncEngine, area_id: str) -> tuple[Stock, int]:
    """The area's counters as stored, and its version."""
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(seat_areas).where(seat_areas.c.id == area_id)))
            .mappings()
            .one()
        )
    return Stock(row["capacity"], row["reserved"], row["sold"]), row["version"]


async def held_and_sold(engine: AsyncEngine, area_id: str) -> tuple[int, int]:
    """Seats in held and in confirmed reservations of the area, summed from reservation rows."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(reservations.c.status, reservations.c.quantity).where(
                reservations.c.area_id == area_id
            )
        )
        held = sold = 0
        for status, quantity in rows:
            if status == "held":
                held += quantity
            elif status == "confirmed":
                sold += quantity
    return held, sold
