"""Cache, counters, locks and rate limits behind one small port, chosen once by URL scheme.

``memory://`` is the in-process adapter (all-in-one mode, shipped and documented, not a test
double); ``redis://`` is the Redis adapter, shared by every process of every service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol


class LockTimeout(Exception):
    """The lock stayed held by another owner for the whole bounded wait."""


@dataclass(frozen=True, slots=True)
class TakeResult:
    """Outcome of an atomic check-and-decrement.

    ``taken`` is true when ``amount`` was subtracted. ``remaining`` is the counter's value after
    the call, or None when the counter does not exist (the caller must ask the system of record).
    """

    taken: bool
    remaining: int | None


@dataclass(frozen=True, slots=True)
class RateDecision:
    """One token-bucket decision: allowed or not, tokens left, and when to come back."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float


class Lock(Protocol):
    key: str
    token: str

    async def release(self) -> bool:
        """Delete the lock only if this owner still holds it; False when it had expired."""
        ...

    async def extend(self, ttl: float) -> bool:
        """Push the expiry out to ``ttl`` seconds from now, only if still the owner."""
        ...


class Cache(Protocol):
    """The port. Keys are plain strings; adapters add their own prefix."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store a value; with ``only_if_absent`` do nothing (and return False) if it exists."""
        ...

    async def delete(self, *keys: str) -> int: ...

    async def counter_set(self, key: str, value: int) -> None: ...

    async def counter_get(self, key: str) -> int | None: ...

    async def counter_add(self, key: str, delta: int) -> int:
        """Add (or subtract) atomically; a missing counter starts at zero."""
        ...

    async def counter_take(self, key: str, amount: int) -> TakeResult:
        """Atomically subtract ``amount`` if the counter holds at least that much; never below 0."""
        ...

    async def acquire_lock(self, key: str, *, ttl: float, wait: float) -> Lock | None:
        """Take an expiring lock with a random owner token, waiting at most ``wait`` seconds."""
        ...

    async def rate_limit(self, key: str, *, rate: float, burst: int, cost: int = 1) -> RateDecision:
        """Atomic token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""
        ...

    async def ping(self) -> None:
        """Raise if the backing store cannot be reached."""
        ...

    async def close(self) -> None: ...


@asynccontextmanager
async def locked(cache: Cache, key: str, *, ttl: float, wait: float) -> AsyncIterator[Lock]:
    """Hold ``key`` for the block; raises LockTimeout when it cannot be had within ``wait``."""
    lock = await cache.acquire_lock(key, ttl=ttl, wait=wait)
    if lock is None:
        raise LockTimeout(key)
    try:
        yield lock
    finally:
        await lock.release()


def open_cache(url: str, *, prefix: str = "marquee:") -> Cache:
    """Build the adapter the URL names (no I/O; call ``ping`` to check reachability)."""
    if url.startswith("memory://"):
        from marquee.platform.cache.memory import MemoryCache

        return MemoryCache(prefix=prefix)
    from marquee.platform.cache.redis import RedisCache

    return RedisCache(url, prefix=prefix)
