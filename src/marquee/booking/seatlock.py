"""The seat lock, taken once per batch of buyers instead of once per buyer.

The seed takes the distributed lock ``seat_lock:{session}:{area}`` around each reservation.
Done naively, a rush queues every buyer who got past the availability counter behind that one
lock, one Catalog round trip after another (a lock convoy). Here the buyers of one area in one
process share the lock: whoever arrives while it is being waited for or held joins the next
batch, the batch's holder takes the lock once, and the batch's reservations run side by side
inside it. Catalog's conditional update still decides every seat; the lock keeps the
instances taking turns on the area, with a critical section of about one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from marquee.platform.cache import Cache, locked

T = TypeVar("T")

Job = Callable[[], Awaitable[T]]
Undo = Callable[[T], Awaitable[None]]


@dataclass(eq=False)
class _Entry(Generic[T]):
    job: Job[T]
    undo: Undo[T]
    future: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SeatLock:
    """Runs jobs under a shared cache lock, batching the jobs that wait for the same key.

    ``run`` raises ``LockTimeout`` when the lock cannot be had within ``wait`` seconds (for
    every job of that batch). A job whose caller gave up (cancelled) before its turn is
    skipped; one whose caller gave up while it ran is undone with its ``undo``, so nothing a
    caller never heard of is left behind.
    """

    def __init__(self, cache: Cache, *, ttl: float, wait: float) -> None:
        self._cache = cache
        self._ttl = ttl
        self._wait = wait
        self._queued: dict[str, list[_Entry[Any]]] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}

    async def run(self, key: str, job: Job[T], undo: Undo[T]) -> T:
        entry: _Entry[T] = _Entry(job, undo)
        self._queued.setdefault(key, []).append(entry)
        if key not in self._drainers:
            drainer = asyncio.create_task(self._drain(key), name=f"seat-lock:{key}")
            self._drainers[key] = drainer
        return await entry.future

    async def _drain(self, key: str) -> None:
        batch: list[_Entry[Any]] = []
        try:
            while batch := self._queued.pop(key, []):
                live = [entry for entry in batch if not entry.future.done()]
                if live:
                    await self._run_batch(key, live)
        finally:
            # Reached with work left only when cancelled (shutdown): nobody will run it.
            self._drainers.pop(key, None)
            for entry in batch + self._queued.pop(key, []):
                if not entry.future.done():
                    entry.future.cancel()

    async def _run_batch(self, key: str, batch: list[_Entry[Any]]) -> None:
        try:
            async with locked(self._cache, key, ttl=self._ttl, wait=self._wait):
                outcomes = await asyncio.gather(
                    *(self._attempt(entry) for entry in batch), return_exceptions=True
                )
        except Exception as exc:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        # _attempt handles every Exception itself; anything else (a cancellation) goes on.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _attempt(self, entry: _Entry[Any]) -> None:
        if entry.future.done():  # its caller gave up while the lock was awaited
            return
        try:
            result = await entry.job()
        except Exception as exc:
            if not entry.future.done():
                entry.future.set_exception(exc)
            return
        if entry.future.done():
            await entry.undo(result)  # nobody is left to use it
        else:
            entry.future.set_result(result)
