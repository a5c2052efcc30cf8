"""/readyz against real PostgreSQL, Redis and NATS reached through TCP proxies: cutting one
proxy takes that dependency down, readiness turns false naming it (the others stay ok), and
comes back once the dependency does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgi_lifespan import LifespanManager

from marquee.identity.app import create_app
from marquee.platform.kernel import Kernel
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from marquee_nats import NatsBroker
from tests import servers


@dataclass
class TcpProxy:
    """Forwards connections from a local port to ``host:port`` until stopped; ``stop`` also
    cuts the connections already open, as a crashed server would."""

    host: str
    port: int
    listen_port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def via(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.listen_port}"))

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client.close()
            return
        self._writers |= {client, server}

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        try:
            await asyncio.gather(pump(client_reader, server), pump(server_reader, client))
        finally:
            self._writers -= {client, server}


def proxy_for(url: str, default_port: int) -> TcpProxy:
    parts = urlsplit(url.replace("+asyncpg", ""))
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)


@dataclass
class Proxied:
    database: TcpProxy
    cache: TcpProxy
    broker: TcpProxy
    settings: Settings


@pytest.fixture
async def proxied(
    redis_url: str, redis_prefix: str, nats_url: str, tmp_path: Path
) -> AsyncIterator[Proxied]:
    """Identity's dependencies, each behind a proxy: a private PostgreSQL database, Redis
    under this test's prefix, and a NATS stream of its own; all removed afterwards."""
    postgres_url = await servers.create_postgres_database()
    database = proxy_for(postgres_url, 5432)
    cache = proxy_for(redis_url, 6379)
    broker = proxy_for(nats_url, 4222)
    for proxy in (database, cache, broker):
        await proxy.start()
    prefix = servers.unique("mqready")
    settings = Settings(
        data_dir=tmp_path / "var",
        jwt_secret="test-secret-" + "x" * 32,
        database_url=database.via(postgres_url),
        cache_url=cache.via(redis_url),
        cache_prefix=redis_prefix,
        broker_url=broker.via(nats_url),
        broker_prefix=prefix,
    )
    try:
        yield Proxied(database, cache, broker, settings)
    finally:
        for proxy in (database, cache, broker):
            await proxy.stop()
        janitor = NatsBroker(nats_url, prefix=prefix)
        await janitor.start()
        await janitor.destroy()
        await janitor.close()
        await servers.drop_postgres_database(postgres_url)


async def readiness_until(
    client: AsgiTransport, status: int, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll /readyz until it answers ``status``; the checks it gave then."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await client.request("GET", "/readyz")
        if answer.status == status:
            checks: dict[str, Any] = answer.json()["checks"]
            return checks
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz still {answer.status}: {answer.json()}")
        await asyncio.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.nats
@pytest.mark.parametrize("dependency", ["database", "cache", "broker"])
async def test_readiness_is_false_while_one_dependency_is_down(
    proxied: Proxied, dependency: str
) -> None:
    app = create_app(Kernel.from_settings(proxied.settings))
    client = AsgiTransport(app)
    down: TcpProxy = getattr(proxied, dependency)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        healthy = await readiness_until(client, 200)
        await down.stop()
        broken = await readiness_until(client, 503)
        await down.start()
        recovered = await readiness_until(client, 200)

    assert healthy == {"database": "ok", "cache": "ok", "broker": "ok"}
    assert broken[dependency].startswith("error: ")
    assert {name: check for name, check in broken.items() if name != dependency} == {
        name: "ok" for name in ("database", "cache", "broker") if name != dependency
    }
    assert recovered == healthy
