"""Listings cached in the shared cache: several catalog instances see an admin's change at once,
and a cache outage costs speed, never an answer. Memory and Redis adapters alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog import repository as repo
from marquee.catalog.service import CatalogService
from marquee.platform.cache import Cache
from marquee.platform.cache.memory import MemoryCache
from marquee.platform.cache.redis import RedisCache
from tests import servers
from tests.integration.catalog_support import (
    ManualClock,
    migrated_engine,
    sqlite_url,
    stock_area,
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(sqlite_url(tmp_path)) as migrated:
        yield migrated


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def redis_or_memory(request: pytest.FixtureRequest) -> str | None:
    """The Redis server's URL, or None for the in-process cache."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def shared_cache(redis_or_memory: str | None) -> AsyncIterator[Cache]:
    if redis_or_memory is None:
        yield MemoryCache()
        return
    prefix = servers.unique("marquee-test:") + ":"
    cache = RedisCache(redis_or_memory, prefix=prefix)
    try:
        yield cache
    finally:
        await cache.close()
        await servers.delete_redis_prefix(redis_or_memory, prefix)


def titles(body: bytes) -> list[str]:
    return [show["title"] for show in orjson.loads(body)["shows"]]


async def test_an_admin_change_on_one_instance_is_seen_by_every_instance(
    engine: AsyncEngine, shared_cache: Cache
) -> None:
    clock = ManualClock()
    browsing, admin = (CatalogService(engine, shared_cache, clock=clock) for _ in range(2))
    area = await stock_area(admin, capacity=10)
    assert titles(await browsing.browse_shows(city="上海")) == ["周杰伦 2026 世界巡回演唱会"]

    # Behind the service's back: the cached listing is still served...
    async with engine.begin() as conn:
        await repo.update_show(conn, area.show_id, {"title": "旧标题"}, clock())
    assert titles(await browsing.browse_shows(city="上海")) == ["周杰伦 2026 世界巡回演唱会"]
    # ...until any admin write, on any instance, moves every listing on.
    await admin.update_show(area.show_id, {"title": "周杰伦 嘉年华"})
    assert titles(await browsing.browse_shows(city="上海")) == ["周杰伦 嘉年华"]
    detail = orjson.loads(await browsing.show_detail(area.show_id))
    assert detail["title"] == "周杰伦 嘉年华"


async def test_cached_listings_expire_after_their_ttl(engine: AsyncEngine) -> None:
    clock = ManualClock()
    cache = MemoryCache()
    catalog = CatalogService(engine, cache, clock=clock, listing_ttl=0.05)
    area = await stock_area(catalog, capacity=10)
    await catalog.browse_shows()
    async with engine.begin() as conn:
        await repo.update_show(conn, area.show_id, {"title": "过期后可见"}, clock())
    # MemoryCache measures its TTLs on the monotonic clock; wait them out.
    await asyncio.sleep(0.1)
    assert titles(await catalog.browse_shows()) == ["过期后可见"]


class BrokenCache(MemoryCache):
    """A cache whose every call fails, as Redis does when it is down."""

    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("cache down")

    async def set(self, key: str, value: bytes, **kwargs: Any) -> bool:
        raise ConnectionError("cache down")

    async def counter_get(self, key: str) -> int | None:
        raise ConnectionError("cache down")

    async def counter_add(self, key: str, delta: int) -> int:
        raise ConnectionError("cache down")


async def test_browsing_and_administering_work_while_the_cache_is_down(
    engine: AsyncEngine,
) -> None:
    catalog = CatalogService(engine, BrokenCache(), clock=ManualClock())
    area = await stock_area(catalog, capacity=10)
    await catalog.update_show(area.show_id, {"title": "缓存故障也能改"})
    assert titles(await catalog.browse_shows()) == ["缓存故障也能改"]
