"""Gateway instances share one rate limit per client through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter

from marquee.gateway.app import Gateway
from marquee.platform.app import create_service_app
from marquee.platform.kernel import Kernel
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, Response

pytestmark = pytest.mark.redis

router = APIRouter()


@router.get("/api/v1/shows")
async def shows() -> dict[str, list[str]]:
    return {"shows": []}


@pytest.fixture
async def gateways(
    settings: Settings, redis_url: str, redis_prefix: str
) -> AsyncIterator[list[AsgiTransport]]:
    """Two gateways, each with its own kernel (own Redis client), in front of one catalog."""
    shared = settings.model_copy(
        update={
            "cache_url": redis_url,
            "cache_prefix": redis_prefix,
            "rate_limit_per_second": 10.0,
            "rate_limit_burst": 10,
        }
    )
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            kernel = Kernel.from_settings(shared)
            catalog = create_service_app("catalog", kernel, routers=[router])
            gateway = Gateway(kernel, {"catalog": AsgiTransport(catalog)})
            await stack.enter_async_context(LifespanManager(gateway))
            clients.append(AsgiTransport(gateway))
        yield clients


async def get_shows(client: AsgiTransport, ip: str) -> Response:
    client.client = ip
    return await client.request("GET", "/api/v1/shows")


async def test_the_eleventh_request_across_two_gateways_is_refused(
    gateways: list[AsgiTransport],
) -> None:
    answers = await asyncio.gather(*(get_shows(gateways[i % 2], "203.0.113.20") for i in range(11)))
    other = await get_shows(gateways[1], "203.0.113.21")

    assert sorted(a.status for a in answers) == [200] * 10 + [429]
    refused = next(a for a in answers if a.status == 429)
    assert int(refused.header("retry-after") or 0) >= 1
    assert refused.header("ratelimit-remaining") == "0"
    assert other.status == 200


async def test_both_gateways_count_down_one_bucket(gateways: list[AsgiTransport]) -> None:
    first = await get_shows(gateways[0], "203.0.113.22")
    second = await get_shows(gateways[1], "203.0.113.22")

    assert first.header("ratelimit-remaining") == "9"
    assert second.header("ratelimit-remaining") == "8"
