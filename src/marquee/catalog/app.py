"""The catalog service's app: its routes, database and background work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from marquee.catalog.api import ROUTERS, install_error_table
from marquee.catalog.demo import load_demo_data
from marquee.catalog.service import CatalogService, Clock, sweep_forever, utc_now
from marquee.platform.app import create_service_app
from marquee.platform.kernel import Kernel

MIGRATIONS = Path(__file__).parent / "migrations"


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
