"""One contract, two adapters: the in-process cache and Redis must behave alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from marquee.platform.cache import Cache, LockTimeout, locked
from marquee.platform.cache.memory import MemoryCache
from marquee.platform.cache.redis import RedisCache
from marquee.platform.ratelimit import Bucket, take


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def new_cache(request: pytest.FixtureRequest) -> Callable[[], Cache]:
    """Builds the adapter under test (no I/O).

    Synchronous so it can ask for the Redis fixtures here, not in its signature: the memory
    variant then never needs Redis, and an async fixture could not set up another one.
    """
    if request.param == "memory":
        return lambda: MemoryCache(prefix="test:")
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return lambda: RedisCache(url, prefix=prefix)


@pytest.fixture
async def cache(new_cache: Callable[[], Cache]) -> AsyncIterator[Cache]:
    adapter = new_cache()
    try:
        yield adapter
    finally:
        await adapter.close()


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


# -- values ----------------------------------------------------------------------------------


async def test_a_value_set_can_be_read_back(cache: Cache) -> None:
    assert await cache.set("greeting", b"hello") is True

    assert await cache.get("greeting") == b"hello"


async def test_a_missing_key_reads_as_none(cache: Cache) -> None:
    assert await cache.get("nobody-wrote-this") is None


async def test_setting_again_replaces_the_value(cache: Cache) -> None:
    await cache.set("k", b"one")
    await cache.set("k", b"two")

    assert await cache.get("k") == b"two"


async def test_a_value_with_a_ttl_expires(cache: Cache) -> None:
    await cache.set("short", b"lived", ttl=0.1)
    assert await cache.get("short") == b"lived"

    await asyncio.sleep(0.15)

    assert await cache.get("short") is None


async def test_setting_without_a_ttl_removes_the_old_ttl(cache: Cache) -> None:
    await cache.set("k", b"brief", ttl=0.1)
    await cache.set("k", b"lasting")

    await asyncio.sleep(0.15)

    assert await cache.get("k") == b"lasting"


async def test_only_if_absent_does_not_overwrite(cache: Cache) -> None:
    assert await cache.set("k", b"first", only_if_absent=True) is True
    assert await cache.set("k", b"second", only_if_absent=True) is False

    assert await cache.get("k") == b"first"


async def test_only_if_absent_succeeds_once_the_old_value_expired(cache: Cache) -> None:
    await cache.set("k", b"old", ttl=0.1)
    await asyncio.sleep(0.15)

    assert await cache.set("k", b"new", only_if_absent=True) is True
    assert await cache.get("k") == b"new"


async def test_delete_removes_keys_and_counts_those_that_existed(cache: Cache) -> None:
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    await cache.counter_set("c", 3)

    assert await cache.delete("a", "c", "never-there") == 2
    assert await cache.delete() == 0

    assert await cache.get("a") is None
    assert await cache.counter_get("c") is None
    assert await cache.get("b") == b"2"


async def test_a_ttl_must_be_positive(cache: Cache) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await cache.set("k", b"v", ttl=0)
    with pytest.raises(ValueError, match="ttl"):
        await cache.acquire_lock("k", ttl=-1, wait=0)


# -- counters --------------------------------------------------------------------------------


async def test_a_counter_set_can_be_read_back(cache: Cache) -> None:
    await cache.counter_set("seats", 120)

    assert await cache.counter_get("seats") == 120
    assert await cache.counter_get("no-such-counter") is None


async def test_counters_are_stored_as_decimal_values(cache: Cache) -> None:
    await cache.counter_set("seats", 42)
    await cache.set("typed", b"7")

    assert await cache.get("seats") == b"42"
    assert await cache.counter_add("typed", 1) == 8


async def test_counter_add_adds_and_subtracts(cache: Cache) -> None:
    await cache.counter_set("n", 10)

    assert await cache.counter_add("n", 5) == 15
    assert await cache.counter_add("n", -20) == -5
    assert await cache.counter_get("n") == -5


async def test_counter_add_starts_a_missing_counter_at_zero(cache: Cache) -> None:
    assert await cache.counter_add("fresh", 3) == 3


async def test_counter_add_keeps_the_counters_ttl(cache: Cache) -> None:
    await cache.set("n", b"5", ttl=0.1)
    assert await cache.counter_add("n", 1) == 6

    await asyncio.sleep(0.15)

    assert await cache.counter_get("n") is None


async def test_counter_take_subtracts_when_there_is_enough(cache: Cache) -> None:
    await cache.counter_set("seats", 5)

    result = await cache.counter_take("seats", 3)

    assert (result.taken, result.remaining) == (True, 2)
    assert await cache.counter_get("seats") == 2


async def test_counter_take_refuses_more_than_is_left_and_takes_nothing(cache: Cache) -> None:
    await cache.counter_set("seats", 2)

    result = await cache.counter_take("seats", 3)

    assert (result.taken, result.remaining) == (False, 2)
    assert await cache.counter_get("seats") == 2


async def test_counter_take_on_a_missing_counter_answers_none(cache: Cache) -> None:
    result = await cache.counter_take("unknown", 1)

    assert (result.taken, result.remaining) == (False, None)
    assert await cache.counter_get("unknown") is None


async def test_counter_take_can_empty_a_counter_but_no_further(cache: Cache) -> None:
    await cache.counter_set("seats", 1)

    first = await cache.counter_take("seats", 1)
    second = await cache.counter_take("seats", 1)

    assert (first.taken, first.remaining) == (True, 0)
    assert (second.taken, second.remaining) == (False, 0)


async def test_counter_take_wants_a_positive_amount(cache: Cache) -> None:
    await cache.counter_set("seats", 5)

    with pytest.raises(ValueError, match="amount"):
        await cache.counter_take("seats", 0)


async def test_counter_take_never_oversells_under_a_crowd(cache: Cache) -> None:
    await cache.counter_set("seats", 100)

    results = await asyncio.gather(*(cache.counter_take("seats", 1) for _ in range(500)))

    assert sum(result.taken for result in results) == 100
    assert all(result.remaining is not None and result.remaining >= 0 for result in results)
    assert await cache.counter_get("seats") == 0


# -- locks -----------------------------------------------------------------------------------


async def test_a_held_lock_keeps_a_second_owner_out(cache: Cache) -> None:
    first = await cache.acquire_lock("seat", ttl=5, wait=0)
    assert first is not None
    assert first.key == "seat"

    assert await cache.acquire_lock("seat", ttl=5, wait=0) is None


async def test_owners_get_different_tokens(cache: Cache) -> None:
    first = await cache.acquire_lock("a", ttl=5, wait=0)
    second = await cache.acquire_lock("b", ttl=5, wait=0)

    assert first is not None
    assert second is not None
    assert first.token != second.token
    assert len(first.token) >= 32


async def test_a_second_owner_gets_the_lock_once_the_first_releases(cache: Cache) -> None:
    first = await cache.acquire_lock("seat", ttl=5, wait=0)
    assert first is not None

    assert await first.release() is True

    second = await cache.acquire_lock("seat", ttl=5, wait=0)
    assert second is not None


async def test_a_waiting_owner_gets_the_lock_when_it_is_released(cache: Cache) -> None:
    first = await cache.acquire_lock("seat", ttl=5, wait=0)
    assert first is not None

    async def release_soon() -> None:
        await asyncio.sleep(0.1)
        await first.release()

    releaser = asyncio.create_task(release_soon())
    start = time.monotonic()
    second = await cache.acquire_lock("seat", ttl=5, wait=2.0)
    waited = elapsed_since(start)
    await releaser

    assert second is not None
    assert 0.05 <= waited < 0.5


async def test_a_stale_owner_cannot_release_the_next_owners_lock(cache: Cache) -> None:
    stale = await cache.acquire_lock("seat", ttl=0.1, wait=0)
    assert stale is not None
    await asyncio.sleep(0.15)
    current = await cache.acquire_lock("seat", ttl=5, wait=0)
    assert current is not None

    assert await stale.release() is False

    assert await cache.acquire_lock("seat", ttl=5, wait=0) is None
    assert await current.release() is True


async def test_releasing_twice_reports_the_second_time(cache: Cache) -> None:
    lock = await cache.acquire_lock("seat", ttl=5, wait=0)
    assert lock is not None

    assert await lock.release() is True
    assert await lock.release() is False


async def test_a_lock_outlives_its_dead_owner_only_until_its_ttl(cache: Cache) -> None:
    abandoned = await cache.acquire_lock("seat", ttl=0.2, wait=0)
    assert abandoned is not None

    start = time.monotonic()
    heir = await cache.acquire_lock("seat", ttl=5, wait=1.0)
    waited = elapsed_since(start)

    assert heir is not None
    assert 0.1 <= waited < 0.6


async def test_a_bounded_wait_gives_up_in_about_the_wait(cache: Cache) -> None:
    assert await cache.acquire_lock("seat", ttl=5, wait=0) is not None

    start = time.monotonic()
    lock = await cache.acquire_lock("seat", ttl=5, wait=0.2)
    waited = elapsed_since(start)

    assert lock is None
    assert 0.2 <= waited < 0.4


async def test_the_owner_can_extend_a_lock(cache: Cache) -> None:
    lock = await cache.acquire_lock("seat", ttl=0.2, wait=0)
    assert lock is not None

    assert await lock.extend(2.0) is True
    await asyncio.sleep(0.3)

    assert await cache.acquire_lock("seat", ttl=5, wait=0) is None
    assert await lock.release() is True


async def test_a_lapsed_owner_cannot_extend_the_next_owners_lock(cache: Cache) -> None:
    stale = await cache.acquire_lock("seat", ttl=0.1, wait=0)
    assert stale is not None
    await asyncio.sleep(0.15)
    current = await cache.acquire_lock("seat", ttl=0.3, wait=0)
    assert current is not None

    assert await stale.extend(5.0) is False

    await asyncio.sleep(0.35)
    assert await cache.acquire_lock("seat", ttl=5, wait=0) is not None


async def test_locked_holds_the_lock_for_the_block_and_releases_it(cache: Cache) -> None:
    async with locked(cache, "seat", ttl=5, wait=0) as lock:
        assert lock.key == "seat"
        assert await cache.acquire_lock("seat", ttl=5, wait=0) is None

    assert await cache.acquire_lock("seat", ttl=5, wait=0) is not None


async def test_locked_raises_lock_timeout_when_the_lock_stays_taken(cache: Cache) -> None:
    assert await cache.acquire_lock("seat", ttl=5, wait=0) is not None

    with pytest.raises(LockTimeout):
        async with locked(cache, "seat", ttl=5, wait=0.05):
            pytest.fail("the block ran without the lock")


async def test_only_one_of_a_crowd_holds_the_lock_at_a_time(cache: Cache) -> None:
    holders = 0
    most = 0

    async def work() -> None:
        nonlocal holders, most
        async with locked(cache, "seat", ttl=5, wait=5):
            holders += 1
            most = max(most, holders)
            await asyncio.sleep(0.005)
            holders -= 1

    await asyncio.gather(*(work() for _ in range(20)))

    assert most == 1


# -- rate limits -----------------------------------------------------------------------------


async def test_a_burst_is_allowed_then_refused_with_a_retry_after(cache: Cache) -> None:
    decisions = [await cache.rate_limit("ip:1", rate=1.0, burst=3) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    refused = decisions[-1]
    assert 0.9 < refused.retry_after <= 1.0
    assert 2.9 < refused.reset_after <= 3.0


async def test_a_rate_limit_refills_over_time(cache: Cache) -> None:
    for _ in range(2):
        assert (await cache.rate_limit("ip:1", rate=20.0, burst=2)).allowed
    refused = await cache.rate_limit("ip:1", rate=20.0, burst=2)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.05

    await asyncio.sleep(refused.retry_after + 0.02)

    assert (await cache.rate_limit("ip:1", rate=20.0, burst=2)).allowed


async def test_rate_limits_on_separate_keys_are_independent(cache: Cache) -> None:
    assert (await cache.rate_limit("ip:1", rate=0.01, burst=1)).allowed
    assert not (await cache.rate_limit("ip:1", rate=0.01, burst=1)).allowed

    assert (await cache.rate_limit("ip:2", rate=0.01, burst=1)).allowed


async def test_a_costly_request_spends_several_tokens(cache: Cache) -> None:
    spent = await cache.rate_limit("ip:1", rate=0.01, burst=5, cost=4)
    refused = await cache.rate_limit("ip:1", rate=0.01, burst=5, cost=2)

    assert (spent.allowed, spent.remaining) == (True, 1)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(100.0, rel=0.01)


async def test_a_crowd_on_one_key_never_exceeds_the_burst(cache: Cache) -> None:
    decisions = await asyncio.gather(
        *(cache.rate_limit("ip:1", rate=0.01, burst=10) for _ in range(200))
    )

    assert sum(d.allowed for d in decisions) == 10
    assert all(d.retry_after > 0 for d in decisions if not d.allowed)


async def test_rate_limits_that_make_no_sense_are_rejected(cache: Cache) -> None:
    with pytest.raises(ValueError, match="cost"):
        await cache.rate_limit("ip:1", rate=1.0, burst=2, cost=3)
    with pytest.raises(ValueError, match="rate"):
        await cache.rate_limit("ip:1", rate=0.0, burst=2)


# -- lifecycle -------------------------------------------------------------------------------


async def test_a_reachable_cache_answers_ping(cache: Cache) -> None:
    await cache.ping()


# -- Redis only ------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_writes_every_key_under_its_prefix(redis_url: str, redis_prefix: str) -> None:
    cache = RedisCache(redis_url, prefix=redis_prefix)
    raw = Redis.from_url(redis_url)
    try:
        await cache.set("value", b"v")
        await cache.counter_set("counter", 1)
        await cache.counter_take("counter", 1)
        await cache.acquire_lock("lock", ttl=5, wait=0)
        await cache.rate_limit("bucket", rate=1.0, burst=2)

        keys = {key async for key in raw.scan_iter(match=f"{redis_prefix}*")}

        expected = {"value", "counter", "lock", "bucket"}
        assert keys == {(redis_prefix + name).encode() for name in expected}
    finally:
        await raw.aclose()
        await cache.close()


@pytest.mark.redis
async def test_redis_rate_limit_buckets_expire_once_they_would_be_full(
    redis_url: str, redis_prefix: str
) -> None:
    cache = RedisCache(redis_url, prefix=redis_prefix)
    raw = Redis.from_url(redis_url)
    try:
        await cache.rate_limit("bucket", rate=2.0, burst=4, cost=4)

        ttl_ms = await raw.pttl(f"{redis_prefix}bucket")

        assert 2000 < ttl_ms <= 3000
    finally:
        await raw.aclose()
        await cache.close()


@pytest.mark.redis
async def test_redis_rate_limit_script_does_the_same_arithmetic_as_ratelimit_take(
    redis_url: str, redis_prefix: str
) -> None:
    # A saved timestamp far in the future freezes the refill (the clock reads as going
    # backwards), so the script's answer is deterministic and can be compared bit for bit.
    cache = RedisCache(redis_url, prefix=redis_prefix)
    raw = Redis.from_url(redis_url)
    future_us = 10**15 * 3
    try:
        for tokens in (0.0, 0.3, 1.0, 2.9999999999, 4.5, 5.0):
            for rate in (0.7, 3.0, 1e3):
                for cost in (1, 2, 5):
                    key = f"bucket:{tokens}:{rate}:{cost}"
                    await raw.hset(
                        redis_prefix + key, mapping={"tokens": repr(tokens), "ts": future_us}
                    )
                    saved = Bucket(tokens=tokens, updated_at=future_us / 1e6)

                    got = await cache.rate_limit(key, rate=rate, burst=5, cost=cost)

                    _, expected = take(saved, now=0.0, rate=rate, burst=5, cost=cost)
                    assert got == expected, key
    finally:
        await raw.aclose()
        await cache.close()


async def test_ping_fails_fast_when_redis_is_unreachable() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", prefix="nowhere:", connect_timeout=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await cache.ping()
        assert elapsed_since(start) < 2.0
    finally:
        await cache.close()


async def test_concurrent_rate_limit_checks_on_one_key_grant_exactly_the_burst(
    cache: Cache,
) -> None:
    decisions = await asyncio.gather(
        *(cache.rate_limit("rush", rate=0.001, burst=10) for _ in range(50))
    )

    assert sum(d.allowed for d in decisions) == 10
    # In arrival order: the first ten were let in, counting down what is left.
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert not any(d.allowed for d in decisions[10:])


@pytest.mark.redis
async def test_batched_rate_limits_survive_redis_losing_its_scripts(
    redis_url: str, redis_prefix: str
) -> None:
    cache = RedisCache(redis_url, prefix=redis_prefix)
    raw = Redis.from_url(redis_url)
    try:
        await cache.rate_limit("warm", rate=1.0, burst=5)
        await raw.script_flush()

        decisions = await asyncio.gather(
            *(cache.rate_limit(f"key-{n}", rate=1.0, burst=5) for n in range(8))
        )

        assert all(d.allowed and d.remaining == 4 for d in decisions)
    finally:
        await raw.aclose()
        await cache.close()


async def test_a_batch_of_rate_limit_checks_fails_together_and_the_next_one_runs() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", prefix="nowhere:", connect_timeout=0.5)
    try:
        for _ in range(2):  # the second batch is sent too, and fails the same way
            outcomes = await asyncio.gather(
                *(cache.rate_limit(f"k{n}", rate=1.0, burst=5) for n in range(3)),
                return_exceptions=True,
            )
            assert all(isinstance(o, RedisConnectionError) for o in outcomes)
    finally:
        await cache.close()
