"""The catalog service's app: its routes, database and background work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote_from_bytes

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from marquee.catalog.api import ROUTERS, install_error_table
from marquee.catalog.demo import load_demo_data
from marquee.catalog.service import CatalogService, Clock, sweep_forever, utc_now
from marquee.platform.app import create_service_app
from marquee.platform.kernel import Kernel

MIGRATIONS = Path(__file__).parent / "migrations"

_ASCII = "".join(chr(i) for i in range(128))


class Utf8QueryMiddleware:
    """Accept raw UTF-8 in query strings (``?city=上海`` as typed, not percent-encoded).

    Such bytes reach ASGI as they came, and Starlette would decode them as Latin-1 (mojibake).
    Percent-encoding every non-ASCII byte makes them decode as UTF-8, exactly like the encoded
    form a browser sends; ASCII (including existing escapes) is left untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: bytes = scope.get("query_string", b"")
            if not raw.isascii():
                scope = dict(scope)
                scope["query_string"] = quote_from_bytes(raw, safe=_ASCII).encode("ascii")
        await self.app(scope, receive, send)


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
    app.add_middleware(Utf8QueryMiddleware)
    return app
