"""The seat lock, taken once per batch of buyers, whose holds are asked for in one call.

The seed takes the distributed lock ``seat_lock:{session}:{area}`` around each reservation.
Done naively, a rush queues every buyer who got past the availability counter behind that one
lock, one Catalog round trip (and one database transaction on the area's row) after another:
a lock convoy. Here the buyers of one area in one process share the lock: whoever arrives
while it is being waited for or held joins the next batch; the batch's holder takes the lock
once and hands the whole batch to ``run_batch`` (one Catalog call, one transaction), which
answers each buyer separately. Catalog's conditional update still decides every seat; the
lock keeps the instances taking turns on the area.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from marquee.platform.cache import Cache, locked

log = logging.getLogger("marquee.booking.seatlock")

P = TypeVar("P")
T = TypeVar("T")

# Answers each item of a batch, in order: its result, or the exception for that item alone.
RunBatch = Callable[[list[P]], Awaitable[Sequence[T | Exception]]]
Undo = Callable[[P, T], Awaitable[None]]


@dataclass(eq=False)
class _Entry(Generic[P, T]):
    item: P
    future: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SeatLock(Generic[P, T]):
    """Runs items in batches under a shared cache lock, one batch per key at a time.

    ``run`` raises ``LockTimeout`` when the lock cannot be had within ``wait`` seconds (for
    every item of that batch), and whatever ``run_batch`` raised when the whole call failed.
    An item whose caller gave up (cancelled) before its batch ran is left out; one whose
    caller gave up while it ran is undone with ``undo``, so nothing a caller never heard of is
    left behind. At most ``max_batch`` items go into one ``run_batch`` call.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        ttl: float,
        wait: float,
        run_batch: RunBatch[P, T],
        undo: Undo[P, T],
        max_batch: int = 500,
    ) -> None:
        self._cache = cache
        self._ttl = ttl
        self._wait = wait
        self._run_batch = run_batch
        self._undo = undo
        self._max_batch = max_batch
        self._queued: dict[str, list[_Entry[P, T]]] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}

    async def run(self, key: str, item: P) -> T:
        entry: _Entry[P, T] = _Entry(item)
        self._queued.setdefault(key, []).append(entry)
        if key not in self._drainers:
            drainer = asyncio.create_task(self._drain(key), name=f"seat-lock:{key}")
            self._drainers[key] = drainer
        return await entry.future

    async def _drain(self, key: str) -> None:
        batch: list[_Entry[P, T]] = []
        try:
            while batch := self._queued.pop(key, []):
                live = [entry for entry in batch if not entry.future.done()]
                if live:
                    await self._locked_batch(key, live)
        finally:
            # Reached with work left only when cancelled (shutdown): nobody will run it.
            self._drainers.pop(key, None)
            for entry in batch + self._queued.pop(key, []):
                if not entry.future.done():
                    entry.future.cancel()

    async def _locked_batch(self, key: str, batch: list[_Entry[P, T]]) -> None:
        try:
            async with locked(self._cache, key, ttl=self._ttl, wait=self._wait):
                for start in range(0, len(batch), self._max_batch):
                    await self._call(batch[start : start + self._max_batch])
        except Exception as exc:  # the lock could not be had (or given back)
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)

    async def _call(self, chunk: list[_Entry[P, T]]) -> None:
        live = [entry for entry in chunk if not entry.future.done()]
        if not live:
            return
        try:
            answers = await self._run_batch([entry.item for entry in live])
        except Exception as exc:
            for entry in live:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        for entry, answer in zip(live, answers, strict=True):
            if isinstance(answer, Exception):
                if not entry.future.done():
                    entry.future.set_exception(answer)
            elif entry.future.done():
                await self._undo_quietly(entry.item, answer)  # nobody is left to use it
            else:
                entry.future.set_result(answer)

    async def _undo_quietly(self, item: P, answer: T) -> None:
        try:
            await self._undo(item, answer)
        except Exception:
            log.warning("Could not undo %r; it lapses at its expiry", item, exc_info=True)
