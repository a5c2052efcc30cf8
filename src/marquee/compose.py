"""Putting the services together: all in one process, or one service per process."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from marquee.gateway.app import Gateway
from marquee.platform.kernel import Kernel
from marquee.platform.settings import SERVICES, Settings
from marquee.platform.transport import AsgiTransport

# Start-up order matters in one process: consumers subscribe before producers publish.
START_ORDER = ("identity", "catalog", "notification", "booking")
assert set(START_ORDER) == set(SERVICES)


def service_factory(name: str) -> Callable[[Kernel], FastAPI]:
    """A service's ``create_app``, imported only when that service runs in this process."""
    module = importlib.import_module(f"marquee.{name}.app")
    factory: Callable[[Kernel], FastAPI] = module.create_app
    return factory


def all_in_one(settings: Settings) -> Gateway:
    """Every service in this process behind the gateway, sharing one kernel."""
    kernel = Kernel.from_settings(settings)
    apps = {name: service_factory(name)(kernel) for name in START_ORDER}
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
    """One service (or the gateway) for its own process; others are reached over HTTP.

    Its database must already be migrated (``marquee migrate``): instances of a distributed
    deployment never change the schema under each other."""
    kernel = Kernel.from_settings(settings, migrate=False)
    if name == "gateway":
        return Gateway(kernel, {service: kernel.transport(service) for service in SERVICES})
    return service_factory(name)(kernel)
