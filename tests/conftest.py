"""Fixtures shared by every test: settings in a temporary data dir and the real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from marquee.platform.settings import Settings
from tests import servers


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults in a private data dir; tests pass this object, never os.environ."""
    return Settings(data_dir=tmp_path / "var", jwt_secret="test-secret-" + "x" * 32)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL database for the whole test session, dropped afterwards."""
    url = str(servers.run(servers.create_postgres_database()))
    yield url
    servers.run(servers.drop_postgres_database(url))


@pytest.fixture
def redis_url() -> str:
    return servers.require_redis()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = servers.unique("marquee-test:") + ":"
    yield prefix
    await servers.delete_redis_prefix(redis_url, prefix)


@pytest.fixture
def nats_url() -> str:
    return servers.require_nats()
