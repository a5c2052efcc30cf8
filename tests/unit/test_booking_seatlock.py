"""The seat lock: one acquisition and one batch call per group of waiting buyers, each buyer
answered on its own, nothing left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

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


class Catalog:
    """A batch runner that records its batches; ``gate`` holds the next call back."""

    def __init__(self, cache: MemoryCache) -> None:
        self.cache = cache
        self.batches: list[list[int]] = []
        self.undone: list[tuple[int, str]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.answer: Callable[[int], str | Exception] = lambda n: f"hold-{n}"

    async def run_batch(self, items: list[int]) -> Sequence[str | Exception]:
        assert await self.cache.get(KEY) is not None or self.batches_elsewhere
        self.batches.append(items)
        self.started.set()
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        return [self.answer(n) for n in items]

    batches_elsewhere = False

    async def undo(self, item: int, hold: str) -> None:
        self.undone.append((item, hold))


@pytest.fixture
def cache() -> CountingCache:
    return CountingCache()


@pytest.fixture
def catalog(cache: CountingCache) -> Catalog:
    return Catalog(cache)


def lock_for(
    cache: CountingCache, catalog: Catalog, *, wait: float = 1, max_batch: int = 500
) -> SeatLock[int, str]:
    return SeatLock(
        cache,
        ttl=10,
        wait=wait,
        run_batch=catalog.run_batch,
        undo=catalog.undo,
        max_batch=max_batch,
    )


@pytest.fixture
def seat_lock(cache: CountingCache, catalog: Catalog) -> SeatLock[int, str]:
    return lock_for(cache, catalog)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_buyers_arriving_together_share_one_lock_and_one_call(
    cache: CountingCache, catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    results = await asyncio.gather(*(seat_lock.run(KEY, n) for n in range(10)))

    assert results == [f"hold-{n}" for n in range(10)]
    assert cache.acquired == 1
    assert catalog.batches == [list(range(10))]
    assert await cache.get(KEY) is None  # released afterwards


async def test_buyers_arriving_during_a_batch_form_the_next_one(
    cache: CountingCache, catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    gate = catalog.gate = asyncio.Event()
    first = asyncio.create_task(seat_lock.run(KEY, 0))
    await catalog.started.wait()
    later = [asyncio.create_task(seat_lock.run(KEY, n)) for n in range(1, 6)]
    await settle()
    gate.set()

    assert await first == "hold-0"
    assert await asyncio.gather(*later) == [f"hold-{n}" for n in range(1, 6)]
    assert catalog.batches == [[0], [1, 2, 3, 4, 5]]
    assert cache.acquired == 2


async def test_a_large_batch_is_split_into_calls_of_at_most_max_batch(
    cache: CountingCache, catalog: Catalog
) -> None:
    seat_lock = lock_for(cache, catalog, max_batch=4)

    await asyncio.gather(*(seat_lock.run(KEY, n) for n in range(10)))

    assert [len(batch) for batch in catalog.batches] == [4, 4, 2]
    assert cache.acquired == 1


async def test_every_buyer_of_a_batch_gets_lock_timeout_when_the_lock_stays_taken(
    cache: CountingCache, catalog: Catalog
) -> None:
    seat_lock = lock_for(cache, catalog, wait=0.01)
    assert await cache.acquire_lock(KEY, ttl=10, wait=0) is not None

    outcomes = await asyncio.gather(
        *(seat_lock.run(KEY, n) for n in range(3)), return_exceptions=True
    )

    assert [type(o) for o in outcomes] == [LockTimeout] * 3
    assert catalog.batches == []


async def test_an_item_refused_fails_only_its_own_caller(
    catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    catalog.answer = lambda n: ValueError("no seats") if n == 0 else f"hold-{n}"

    outcomes = await asyncio.gather(
        seat_lock.run(KEY, 0), seat_lock.run(KEY, 1), return_exceptions=True
    )

    assert isinstance(outcomes[0], ValueError)
    assert outcomes[1] == "hold-1"


async def test_a_failed_call_fails_every_caller_of_its_batch(
    cache: CountingCache, catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    async def unreachable(items: list[int]) -> Sequence[str | Exception]:
        raise ConnectionError("catalog is down")

    failing: SeatLock[int, str] = SeatLock(
        cache, ttl=10, wait=1, run_batch=unreachable, undo=catalog.undo
    )

    outcomes = await asyncio.gather(
        *(failing.run(KEY, n) for n in range(3)), return_exceptions=True
    )

    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert await cache.get(KEY) is None


async def test_a_buyer_who_gave_up_before_the_lock_is_left_out(
    catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    gate = catalog.gate = asyncio.Event()
    holder = asyncio.create_task(seat_lock.run(KEY, 0))
    await catalog.started.wait()
    impatient = asyncio.create_task(seat_lock.run(KEY, 1))
    patient = asyncio.create_task(seat_lock.run(KEY, 2))
    await settle()
    impatient.cancel()
    gate.set()

    await holder
    assert await patient == "hold-2"
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert catalog.batches == [[0], [2]]


async def test_a_hold_whose_buyer_gave_up_meanwhile_is_undone(
    catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    gate = catalog.gate = asyncio.Event()
    buyer = asyncio.create_task(seat_lock.run(KEY, 7))
    await catalog.started.wait()
    buyer.cancel()
    gate.set()

    with pytest.raises(asyncio.CancelledError):
        await buyer
    await settle()
    assert catalog.undone == [(7, "hold-7")]


async def test_different_areas_do_not_wait_for_each_other(
    cache: CountingCache, catalog: Catalog, seat_lock: SeatLock[int, str]
) -> None:
    catalog.batches_elsewhere = True
    gate = catalog.gate = asyncio.Event()
    first = asyncio.create_task(seat_lock.run("seat_lock:s:a", 1))
    await catalog.started.wait()

    assert await seat_lock.run("seat_lock:s:b", 2) == "hold-2"
    gate.set()
    assert await first == "hold-1"
