"""The seat lock: one acquisition per batch of waiting buyers, nothing left behind."""

from __future__ import annotations

import asyncio

import pytest

from marquee.booking.seatlock import SeatLock
from marquee.platform.cache import Lock, LockTimeout
from marquee.platform.cache.memory import MemoryCache

KEY = "seat_lock:s:a"


class CountingCache(MemoryCache):
    def __init__(self) -> None:
        super().__init__()
        self.acquired = 0

    async def acquire_lock(self, key: str, *, ttl: float, wait: float) -> Lock | None:
        lock = await super().acquire_lock(key, ttl=ttl, wait=wait)
        self.acquired += lock is not None
        return lock


@pytest.fixture
def cache() -> CountingCache:
    return CountingCache()


@pytest.fixture
def seat_lock(cache: CountingCache) -> SeatLock:
    return SeatLock(cache, ttl=10, wait=1)


async def nothing(_: object) -> None:
    return None


async def test_buyers_arriving_together_share_one_acquisition_and_each_gets_its_result(
    cache: CountingCache, seat_lock: SeatLock
) -> None:
    async def job(n: int) -> int:
        assert await cache.get(KEY) is not None  # runs while the lock is held
        return n * n

    results = await asyncio.gather(
        *(seat_lock.run(KEY, lambda n=n: job(n), nothing) for n in range(10))
    )
    assert results == [n * n for n in range(10)]
    assert cache.acquired == 1
    assert await cache.get(KEY) is None  # released afterwards


async def test_buyers_arriving_during_a_batch_form_the_next_one(
    cache: CountingCache, seat_lock: SeatLock
) -> None:
    gate = asyncio.Event()

    async def first() -> str:
        await gate.wait()
        return "first"

    async def later() -> str:
        return "later"

    one = asyncio.create_task(seat_lock.run(KEY, first, nothing))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    others = [asyncio.create_task(seat_lock.run(KEY, later, nothing)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await one == "first"
    assert await asyncio.gather(*others) == ["later"] * 5
    assert cache.acquired == 2


async def test_every_buyer_of_a_batch_gets_lock_timeout_when_the_lock_stays_taken(
    cache: CountingCache,
) -> None:
    seat_lock = SeatLock(cache, ttl=10, wait=0.01)
    assert await cache.acquire_lock(KEY, ttl=10, wait=0) is not None
    ran: list[int] = []

    async def job() -> None:
        ran.append(1)

    outcomes = await asyncio.gather(
        *(seat_lock.run(KEY, job, nothing) for _ in range(3)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [LockTimeout] * 3
    assert ran == []


async def test_a_failing_job_fails_only_its_own_caller(seat_lock: SeatLock) -> None:
    async def fails() -> int:
        raise ValueError("no seats")

    async def works() -> int:
        return 1

    outcomes = await asyncio.gather(
        seat_lock.run(KEY, fails, nothing),
        seat_lock.run(KEY, works, nothing),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], ValueError)
    assert outcomes[1] == 1


async def test_a_buyer_who_gave_up_before_the_lock_is_skipped(
    cache: CountingCache, seat_lock: SeatLock
) -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    async def first() -> None:
        await gate.wait()

    async def job() -> None:
        ran.append("ran")

    holder = asyncio.create_task(seat_lock.run(KEY, first, nothing))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    impatient = asyncio.create_task(seat_lock.run(KEY, job, nothing))
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await asyncio.sleep(0)
    assert ran == []


async def test_a_result_whose_buyer_gave_up_meanwhile_is_undone(seat_lock: SeatLock) -> None:
    started, gate = asyncio.Event(), asyncio.Event()
    undone: list[str] = []

    async def reserve() -> str:
        started.set()
        await gate.wait()
        return "hold-1"

    async def release(hold: str) -> None:
        undone.append(hold)

    buyer = asyncio.create_task(seat_lock.run(KEY, reserve, release))
    await started.wait()
    buyer.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await buyer
    for _ in range(5):
        await asyncio.sleep(0)
    assert undone == ["hold-1"]


async def test_different_areas_do_not_wait_for_each_other(
    cache: CountingCache, seat_lock: SeatLock
) -> None:
    gate = asyncio.Event()

    async def blocked() -> str:
        await gate.wait()
        return "a"

    async def free() -> str:
        return "b"

    first = asyncio.create_task(seat_lock.run("seat_lock:s:a", blocked, nothing))
    assert await seat_lock.run("seat_lock:s:b", free, nothing) == "b"
    gate.set()
    assert await first == "a"
