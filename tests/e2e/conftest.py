"""Everything through the gateway, in-process: the same requests a person would send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from asgi_lifespan import LifespanManager

from marquee.compose import all_in_one
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, Response


class Api:
    """A JSON client for the gateway. ``ip`` is the caller's address as the gateway sees it."""

    def __init__(self, transport: AsgiTransport) -> None:
        self.transport = transport
        self.token: str | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ip: str = "127.0.0.1",
    ) -> Response:
        send = dict(headers or {})
        bearer = token or self.token
        if bearer:
            send.setdefault("Authorization", f"Bearer {bearer}")
        payload = body if body is not None else b""
        if json is not None:
            payload = orjson.dumps(json)
            send.setdefault("Content-Type", "application/json")
        path, _, query = path.partition("?")
        self.transport.client = ip
        return await self.transport.request(
            method, path, query=query, headers=list(send.items()), body=payload
        )

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", path, **kwargs)


@pytest.fixture
def e2e_settings(settings: Settings) -> Settings:
    """All-in-one defaults; rate limits high enough not to get in the way of ordinary tests."""
    return settings.model_copy(
        update={
            "rate_limit_per_second": 1000.0,
            "rate_limit_burst": 1000,
            "demo_data": False,
            "admin_email": "admin@marquee.test",
            "admin_password": "AdminPass123",
        }
    )


@pytest.fixture
async def api(e2e_settings: Settings) -> AsyncIterator[Api]:
    gateway = all_in_one(e2e_settings)
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        yield Api(AsgiTransport(gateway))
