"""Real PostgreSQL, Redis and NATS for tests: reachability, skip-or-fail, private namespaces.

With ``MARQUEE_REQUIRE_SERVICES=1`` (CI) an unreachable server fails the test; otherwise the
test is skipped and the reason printed, as on a laptop without the servers.
"""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlparse

import pytest

from marquee.bench import stack

POSTGRES_URL = os.environ.get(
    "MARQUEE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MARQUEE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("MARQUEE_TEST_NATS_URL", "nats://127.0.0.1:4222")


def services_required() -> bool:
    return os.environ.get("MARQUEE_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def unavailable(what: str, url: str, why: object) -> None:
    """Fail (services required) or skip (laptop) a test whose server is unreachable."""
    message = f"{what} unreachable at {url}: {why}"
    if services_required():
        pytest.fail(message + " (MARQUEE_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(message + " (set MARQUEE_REQUIRE_SERVICES=1 to make this a failure)")


def reachable(url: str, default_port: int) -> str | None:
    """None when a TCP connection to the URL's host and port opens, else the reason."""
    parsed = urlparse(url.replace("+asyncpg", ""))
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return str(exc)


unique = stack.unique  # a private name: prefix plus 12 random hex digits


async def create_postgres_database() -> str:
    """Make a private database for one test session; returns its SQLAlchemy URL."""
    why = reachable(POSTGRES_URL, 5432)
    if why:
        unavailable("PostgreSQL", POSTGRES_URL, why)
    return await stack.create_database(POSTGRES_URL, prefix="marquee_test_")


async def drop_postgres_database(url: str) -> None:
    await stack.drop_database(url)


def require_postgres() -> str:
    """The server URL (database ``postgres``) when reachable, else skip or fail."""
    why = reachable(POSTGRES_URL, 5432)
    if why:
        unavailable("PostgreSQL", POSTGRES_URL, why)
    return POSTGRES_URL


def require_redis() -> str:
    why = reachable(REDIS_URL, 6379)
    if why:
        unavailable("Redis", REDIS_URL, why)
    return REDIS_URL


def require_nats() -> str:
    why = reachable(NATS_URL, 4222)
    if why:
        unavailable("NATS", NATS_URL, why)
    return NATS_URL


async def delete_redis_prefix(url: str, prefix: str) -> None:
    await stack.delete_cache_prefix(url, prefix)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
