"""Putting the services together: all in one process, or one service per process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from marquee.booking.app import create_app as booking_app
from marquee.catalog.app import create_app as catalog_app
from marquee.gateway.app import Gateway
from marquee.identity.app import create_app as identity_app
from marquee.notification.app import create_app as notification_app
from marquee.platform.kernel import Kernel
from marquee.platform.settings import SERVICES, Settings
from marquee.platform.transport import AsgiTransport

# Start-up order matters in one process: consumers subscribe before producers publish.
SERVICE_FACTORIES: dict[str, Callable[[Kernel], FastAPI]] = {
    "identity": identity_app,
    "catalog": catalog_app,
    "notification": notification_app,
    "booking": booking_app,
}
assert set(SERVICE_FACTORIES) == set(SERVICES)


def all_in_one(settings: Settings) -> Gateway:
    """Every service in this process behind the gateway, sharing one kernel."""
    kernel = Kernel.from_settings(settings)
    apps = {name: factory(kernel) for name, factory in SERVICE_FACTORIES.items()}
    for name, app in apps.items():
        kernel.transports[name] = AsgiTransport(app, timeout=settings.upstream_timeout_seconds)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    return Gateway(kernel, dict(kernel.transports), lifespan=lifespan)


def one_service(name: str, settings: Settings) -> ASGIApp:
    """One service (or the gateway) for its own process; others are reached over HTTP."""
    kernel = Kernel.from_settings(settings)
    if name == "gateway":
        return Gateway(kernel, {service: kernel.transport(service) for service in SERVICES})
    return SERVICE_FACTORIES[name](kernel)
