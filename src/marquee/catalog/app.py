"""The catalog service's app: its routes, database and background work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog.api import ROUTERS, install_error_table
from marquee.catalog.demo import load_demo_data
from marquee.catalog.models import seat_areas, sessions
from marquee.catalog.service import CatalogService, Clock, sweep_forever, utc_now
from marquee.platform.app import create_service_app
from marquee.platform.kernel import Kernel
from marquee.platform.metrics import (
    SEATS_AVAILABLE,
    SEATS_CAPACITY,
    SEATS_RESERVED,
    SEATS_SOLD,
    Sample,
    Source,
    add_metric_source,
)

MIGRATIONS = Path(__file__).parent / "migrations"
# Seat gauges cover at most this many areas (the soonest sessions first): enough for a
# season's on-sale sessions, and a bound on the series one scrape can produce.
SEAT_GAUGE_AREAS = 500


def create_app(
    kernel: Kernel,
    *,
    sweep_interval: float = 5.0,
    listing_ttl: float = 10.0,
    clock: Clock = utc_now,
) -> FastAPI:
    """The catalog app. Its lifespan builds the service, loads the demo catalog when
    ``settings.demo_data`` is on and the catalog is empty, and runs the sweeper that returns
    expired holds to stock every ``sweep_interval`` seconds."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = CatalogService(
            app.state.engine, kernel.cache, clock=clock, listing_ttl=listing_ttl
        )
        app.state.catalog = service
        add_metric_source(app, "catalog.seats", seat_gauges(app.state.engine, clock))
        if kernel.settings.demo_data:
            await load_demo_data(service, clock())
        stop = asyncio.Event()
        sweeper = asyncio.create_task(
            sweep_forever(service, sweep_interval, stop), name="catalog-sweeper"
        )
        try:
            yield
        finally:
            stop.set()
            await sweeper

    app = create_service_app(
        "catalog", kernel, routers=ROUTERS, migrations=MIGRATIONS, lifespan=lifespan
    )
    install_error_table(app)
    return app


def seat_gauges(engine: AsyncEngine, clock: Clock) -> Source:
    """Capacity, reserved, sold and available seats of each area of a session that has not
    ended, read at scrape time (one indexed join, bounded by ``SEAT_GAUGE_AREAS``)."""
    a, s = seat_areas, sessions
    query = (
        select(a.c.session_id, a.c.id, a.c.capacity, a.c.reserved, a.c.sold)
        .join_from(a, s, a.c.session_id == s.c.id)
        .order_by(s.c.starts_at, a.c.id)
        .limit(SEAT_GAUGE_AREAS)
    )

    async def read() -> list[Sample]:
        async with engine.connect() as conn:
            rows = (await conn.execute(query.where(s.c.ends_at > clock()))).all()
        samples: list[Sample] = []
        for session_id, area_id, capacity, reserved, sold in rows:
            samples += [
                SEATS_CAPACITY.sample(capacity, session_id, area_id),
                SEATS_RESERVED.sample(reserved, session_id, area_id),
                SEATS_SOLD.sample(sold, session_id, area_id),
                SEATS_AVAILABLE.sample(capacity - reserved - sold, session_id, area_id),
            ]
        return samples

    return read
