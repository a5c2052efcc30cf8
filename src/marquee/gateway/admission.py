"""Bounded concurrency with a bounded, timed wait: overload becomes fast refusals."""

from __future__ import annotations

import asyncio
from collections import deque


class Rejected(Exception):
    """No room now and none soon: the caller should answer 503 with Retry-After."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Admission:
    """At most ``concurrency`` requests in flight; up to ``queue`` more wait at most ``timeout``.

    A request beyond the queue is rejected at once ("queue_full"); one that waits too long is
    rejected when its wait ends ("queue_timeout"). Waiters are served first come, first served.
    """

    def __init__(self, concurrency: int, queue: int, timeout: float) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.timeout = timeout
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.rejected = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.active < self.concurrency and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.queue:
            self.rejected += 1
            raise Rejected("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as the wait ended: give it to the next one
            self.rejected += 1
            raise Rejected("queue_timeout") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed to us as we were cancelled: pass it on.
                self.release()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # Hand the slot straight to the next waiter; ``active`` stays the same.
                waiter.set_result(None)
                return
        self.active -= 1
