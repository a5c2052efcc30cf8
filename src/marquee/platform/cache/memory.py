"""The in-process cache adapter: one dict on one event loop, for the all-in-one mode."""

from __future__ import annotations

import asyncio
import heapq
import random
import secrets
import time
from dataclasses import dataclass

from marquee.platform.cache import RateDecision, TakeResult
from marquee.platform.ratelimit import Bucket, take

# Lock waiters poll; the pause doubles from the first to the last value below.
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.02


@dataclass(slots=True)
class _Entry:
    # Counters are stored as decimal bytes, as in Redis, so ``get`` on a counter and
    # ``counter_get`` on a value behave alike in both adapters.
    value: bytes | Bucket
    expires_at: float | None


class MemoryLock:
    """A lock held in a MemoryCache; see ``marquee.platform.cache.Lock``."""

    __slots__ = ("_cache", "key", "token")

    def __init__(self, cache: MemoryCache, key: str, token: str) -> None:
        self._cache = cache
        self.key = key
        self.token = token

    async def release(self) -> bool:
        """Delete the lock only if this owner still holds it; False when it had expired."""
        return self._cache._release(self.key, self.token)

    async def extend(self, ttl: float) -> bool:
        """Push the expiry out to ``ttl`` seconds from now, only if still the owner."""
        return self._cache._extend(self.key, self.token, ttl)

    def __repr__(self) -> str:
        return f"MemoryLock(key={self.key!r})"


class MemoryCache:
    """The ``Cache`` port in process memory, shared by every service of one process.

    Every operation is a few synchronous dict steps with no ``await`` in between, so each one is
    atomic on the event loop: that is what makes ``counter_take``, locks and rate limits safe
    without any further locking. Time is ``time.monotonic()``. Expired entries vanish when
    touched, and a heap of expiry times lets every write drop whatever has expired since, so
    keys that are never read again do not pile up.

    Not thread-safe: use it from the one event loop that runs the services.
    """

    def __init__(self, prefix: str = "marquee:") -> None:
        self.prefix = prefix
        self._entries: dict[str, _Entry] = {}
        # (expires_at, key) for every expiring write; stale pairs are skipped when popped.
        self._expiries: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        return f"MemoryCache(prefix={self.prefix!r}, keys={len(self._entries)})"

    # -- storage ---------------------------------------------------------------------------

    def _live(self, full_key: str, now: float) -> _Entry | None:
        entry = self._entries.get(full_key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self._entries[full_key]
            return None
        return entry

    def _put(
        self, full_key: str, value: bytes | Bucket, expires_at: float | None, now: float
    ) -> None:
        # Every write first drops what has expired, so memory follows the live keys.
        self._sweep(now)
        self._entries[full_key] = _Entry(value, expires_at)
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, full_key))
            if len(self._expiries) > 2 * len(self._entries) + 1024:
                # Keys rewritten often with long TTLs leave many stale pairs: rebuild.
                self._expiries = [
                    (entry.expires_at, k)
                    for k, entry in self._entries.items()
                    if entry.expires_at is not None
                ]
                heapq.heapify(self._expiries)

    def _sweep(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expires_at, full_key = heapq.heappop(expiries)
            entry = self._entries.get(full_key)
            # The key may have been rewritten since with a later expiry or none.
            if entry is not None and entry.expires_at == expires_at:
                del self._entries[full_key]

    def _bytes(self, full_key: str, now: float) -> bytes | None:
        entry = self._live(full_key, now)
        if entry is None:
            return None
        if not isinstance(entry.value, bytes):
            raise TypeError(f"{full_key!r} holds a rate-limit bucket, not a value")
        return entry.value

    def _counter(self, full_key: str, now: float) -> int | None:
        raw = self._bytes(full_key, now)
        return None if raw is None else int(raw)

    # -- values ----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self._bytes(self.prefix + key, time.monotonic())

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store a value; with ``only_if_absent`` do nothing (and return False) if it exists."""
        now = time.monotonic()
        full_key = self.prefix + key
        expires_at = _expiry(now, ttl)
        if only_if_absent and self._live(full_key, now) is not None:
            return False
        self._put(full_key, bytes(value), expires_at, now)
        return True

    async def delete(self, *keys: str) -> int:
        now = time.monotonic()
        deleted = 0
        for key in keys:
            if self._live(self.prefix + key, now) is not None:
                del self._entries[self.prefix + key]
                deleted += 1
        return deleted

    # -- counters --------------------------------------------------------------------------

    async def counter_set(self, key: str, value: int) -> None:
        self._put(self.prefix + key, b"%d" % value, None, time.monotonic())

    async def counter_get(self, key: str) -> int | None:
        return self._counter(self.prefix + key, time.monotonic())

    async def counter_add(self, key: str, delta: int) -> int:
        """Add (or subtract) atomically; a missing counter starts at zero."""
        now = time.monotonic()
        full_key = self.prefix + key
        value = (self._counter(full_key, now) or 0) + delta
        entry = self._entries.get(full_key)
        # Like INCRBY, adding keeps whatever expiry the counter had.
        self._put(full_key, b"%d" % value, entry.expires_at if entry else None, now)
        return value

    async def counter_take(self, key: str, amount: int) -> TakeResult:
        """Atomically subtract ``amount`` if the counter holds at least that much; never below 0.

        ``amount`` must be at least 1. A missing counter gives ``TakeResult(False, None)``.
        """
        _check_amount(amount)
        now = time.monotonic()
        full_key = self.prefix + key
        value = self._counter(full_key, now)
        if value is None:
            return TakeResult(taken=False, remaining=None)
        if value < amount:
            return TakeResult(taken=False, remaining=value)
        entry = self._entries[full_key]
        entry.value = b"%d" % (value - amount)
        return TakeResult(taken=True, remaining=value - amount)

    # -- locks -----------------------------------------------------------------------------

    async def acquire_lock(self, key: str, *, ttl: float, wait: float) -> MemoryLock | None:
        """Take an expiring lock with a random owner token, waiting at most ``wait`` seconds.

        The lock lapses after ``ttl`` seconds even if its owner never releases it. Waiters poll
        with a short, growing pause, so a freed lock is picked up within about 20 ms.
        """
        _check_ttl(ttl)
        token = secrets.token_hex(16)
        full_key = self.prefix + key
        deadline = time.monotonic() + max(0.0, wait)
        pause = _FIRST_PAUSE
        while True:
            now = time.monotonic()
            if self._live(full_key, now) is None:
                self._put(full_key, token.encode(), now + ttl, now)
                return MemoryLock(self, key, token)
            left = deadline - now
            if left <= 0:
                return None
            await asyncio.sleep(min(left, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _owned(self, full_key: str, token: str, now: float) -> _Entry | None:
        entry = self._live(full_key, now)
        if entry is None or entry.value != token.encode():
            return None
        return entry

    def _release(self, key: str, token: str) -> bool:
        full_key = self.prefix + key
        if self._owned(full_key, token, time.monotonic()) is None:
            return False
        del self._entries[full_key]
        return True

    def _extend(self, key: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        expires_at = _expiry(now, ttl)
        full_key = self.prefix + key
        entry = self._owned(full_key, token, now)
        if entry is None:
            return False
        self._put(full_key, entry.value, expires_at, now)
        return True

    # -- rate limits -----------------------------------------------------------------------

    async def rate_limit(self, key: str, *, rate: float, burst: int, cost: int = 1) -> RateDecision:
        """Atomic token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

        The arithmetic is ``marquee.platform.ratelimit.take``; a bucket is forgotten a second
        after it would be full again, which is the same as keeping it.
        """
        now = time.monotonic()
        full_key = self.prefix + key
        entry = self._live(full_key, now)
        saved = None if entry is None else entry.value
        if saved is not None and not isinstance(saved, Bucket):
            raise TypeError(f"{full_key!r} holds a value, not a rate-limit bucket")
        bucket, decision = take(saved, now=now, rate=rate, burst=burst, cost=cost)
        self._put(full_key, bucket, now + decision.reset_after + 1.0, now)
        return decision

    # -- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> None:
        """Always reachable: the store is this process."""

    async def close(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._expiries.clear()


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")


def _expiry(now: float, ttl: float | None) -> float | None:
    if ttl is None:
        return None
    _check_ttl(ttl)
    return now + ttl


def _check_amount(amount: int) -> None:
    if amount < 1:
        raise ValueError(f"amount must be at least 1, not {amount!r}")
