"""Every endpoint and dependency is a coroutine: FastAPI runs a plain ``def`` one in a worker
thread, a thread hand-off on every request (it showed up as a fifth of the CPU of a rush)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from marquee.compose import service_factory
from marquee.platform.kernel import Kernel
from marquee.platform.settings import SERVICES, Settings


def dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from dependencies(dependency)


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, through included routers (``original_router`` since FastAPI 0.16x)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is None:
            inner = getattr(route, "routes", None)
        if inner:
            yield from api_routes(list(inner))


@pytest.mark.parametrize("service", SERVICES)
def test_no_request_of_a_service_is_handed_to_a_thread(service: str, settings: Settings) -> None:
    app = service_factory(service)(Kernel.from_settings(settings))
    routes = list(api_routes(app.routes))

    threaded = [
        f"{route.path}: {getattr(call, '__name__', call)}"
        for route in routes
        for call in (route.endpoint, *(d.call for d in dependencies(route.dependant)))
        if call is not None and not inspect.iscoroutinefunction(call)
    ]

    assert routes
    assert not threaded
