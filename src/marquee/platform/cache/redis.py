"""The Redis cache adapter: one shared store for every process of every service."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError

from marquee.platform.cache import RateDecision, TakeResult
from marquee.platform.ratelimit import check_limits

# Lock waiters poll; the pause doubles from the first to the last value below.
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.02

# KEYS[1] lock, ARGV[1] owner token. Compare and delete in one step, so an owner whose lock
# lapsed and was taken by someone else cannot delete the newcomer's lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lock, ARGV[1] owner token, ARGV[2] new time to live in ms.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] counter, ARGV[1] amount. Returns nil when the counter is missing, else
# {taken 0|1, remaining}; the refused value goes back as the stored string so no integer is
# rounded through a Lua double.
_TAKE = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  return false
end
local value = tonumber(raw)
if not value then
  return redis.error_reply('ERR value is not an integer')
end
local amount = tonumber(ARGV[1])
if value < amount then
  return {0, raw}
end
return {1, redis.call('DECRBY', KEYS[1], amount)}
"""

# KEYS[1] bucket hash {tokens, ts}; ARGV rate (tokens/s), burst, cost. The arithmetic of
# marquee.platform.ratelimit.take, line for line, with "now" from the server's clock so every
# gateway instance reads the same one; ts is in whole microseconds, exact in a double. The
# bucket expires a second after it would be full again, and a missing bucket is a full one.
# Floats go back as %.17g strings: a Lua number in a reply is truncated to an integer.
_RATE_LIMIT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local tokens = burst
local updated = now
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if saved[1] and saved[2] then
  local last = tonumber(saved[2])
  local elapsed = math.max(0, now - last) / 1000000
  tokens = math.min(burst, tonumber(saved[1]) + elapsed * rate)
  updated = math.max(now, last)
end

local allowed = 0
local retry_after = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after = (cost - tokens) / rate
end
local reset_after = (burst - tokens) / rate

redis.call('HSET', KEYS[1],
  'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', updated))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(reset_after * 1000) + 1000))
return {allowed, math.floor(tokens),
  string.format('%.17g', retry_after), string.format('%.17g', reset_after)}
"""


class RedisLock:
    """A lock held in Redis; see ``marquee.platform.cache.Lock``."""

    __slots__ = ("_cache", "key", "token")

    def __init__(self, cache: RedisCache, key: str, token: str) -> None:
        self._cache = cache
        self.key = key
        self.token = token

    async def release(self) -> bool:
        """Delete the lock only if this owner still holds it; False when it had expired."""
        return await self._cache._release(self.key, self.token)

    async def extend(self, ttl: float) -> bool:
        """Push the expiry out to ``ttl`` seconds from now, only if still the owner."""
        return await self._cache._extend(self.key, self.token, ttl)

    def __repr__(self) -> str:
        return f"RedisLock(key={self.key!r})"


class _Batched:
    """One Lua script, its concurrent calls sent together as one pipeline.

    Under a rush many callers run the same script at once (every request's rate-limit check,
    say). Each call joins the batch that the next flush sends; while one pipeline is out, new
    calls gather for the next. Every call is still its own atomic script run in Redis, in
    arrival order; a batch costs one network write and one read instead of one of each per
    call. A call's error (a lost connection, a timeout) fails the calls of its batch only.
    """

    def __init__(self, client: Redis, lua: str) -> None:
        self._client = client
        self._script = client.register_script(lua)
        self._pending: list[tuple[Sequence[str], Sequence[str], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    async def __call__(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._run(batch)
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _run(self, batch: list[tuple[Sequence[str], Sequence[str], Any]]) -> list[Any]:
        for attempt in range(2):
            pipe = self._client.pipeline(transaction=False)
            for keys, args, _ in batch:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                # Redis lost its scripts (a restart, SCRIPT FLUSH): load it and run the batch
                # again. NOSCRIPT means the script did not run, so nothing runs twice.
                await self._client.script_load(self._script.script)
                continue
            return results
        raise AssertionError("unreachable")


class RedisCache:
    """The ``Cache`` port on Redis; every key is stored as ``prefix + key``.

    Connections come from a bounded pool: a caller that finds all ``max_connections`` busy
    waits up to ``pool_timeout`` seconds for one rather than failing at once. Opening a
    connection gives up after ``connect_timeout`` seconds and a command after
    ``command_timeout``. Nothing is retried, because a write whose reply was lost may have
    been applied: a retried ``counter_take`` could take twice. Errors are redis-py's
    (``redis.exceptions.ConnectionError``, ``TimeoutError``, ``ResponseError``).

    Counters are decimal strings, locks are ``SET NX PX`` keys holding the owner's token,
    and rate-limit buckets are hashes. Multi-step operations run as Lua scripts, which Redis
    executes atomically.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "marquee:",
        *,
        max_connections: int = 64,
        pool_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        command_timeout: float = 5.0,
    ) -> None:
        self.prefix = prefix
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            decode_responses=False,
        )
        # from_pool hands the pool to the client, whose aclose() disconnects it.
        self._client: Redis = Redis.from_pool(pool)
        self._release_script = self._client.register_script(_RELEASE)
        self._extend_script = self._client.register_script(_EXTEND)
        self._take_script = self._client.register_script(_TAKE)
        self._rate_limit_script = _Batched(self._client, _RATE_LIMIT)

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r})"

    # -- values ----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        # Raw bytes: the client is made without decode_responses.
        return cast(bytes | None, await self._client.get(self.prefix + key))

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store a value; with ``only_if_absent`` do nothing (and return False) if it exists."""
        px = None if ttl is None else _milliseconds(ttl)
        stored = await self._client.set(self.prefix + key, value, px=px, nx=only_if_absent)
        return bool(stored)

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        deleted: int = await self._client.delete(*(self.prefix + key for key in keys))
        return deleted

    # -- counters --------------------------------------------------------------------------

    async def counter_set(self, key: str, value: int) -> None:
        await self._client.set(self.prefix + key, b"%d" % value)

    async def counter_get(self, key: str) -> int | None:
        raw = await self._client.get(self.prefix + key)
        return None if raw is None else int(raw)

    async def counter_add(self, key: str, delta: int) -> int:
        """Add (or subtract) atomically; a missing counter starts at zero."""
        value: int = await self._client.incrby(self.prefix + key, delta)
        return value

    async def counter_take(self, key: str, amount: int) -> TakeResult:
        """Atomically subtract ``amount`` if the counter holds at least that much; never below 0.

        ``amount`` must be at least 1. A missing counter gives ``TakeResult(False, None)``.
        """
        if amount < 1:
            raise ValueError(f"amount must be at least 1, not {amount!r}")
        reply = await self._take_script(keys=[self.prefix + key], args=[amount])
        if reply is None:
            return TakeResult(taken=False, remaining=None)
        taken, remaining = reply
        return TakeResult(taken=bool(taken), remaining=int(remaining))

    # -- locks -----------------------------------------------------------------------------

    async def acquire_lock(self, key: str, *, ttl: float, wait: float) -> RedisLock | None:
        """Take an expiring lock with a random owner token, waiting at most ``wait`` seconds.

        ``SET NX PX``: the lock lapses after ``ttl`` seconds even if its owner dies holding
        it. Waiters poll with a short, growing, jittered pause (so a crowd does not retry in
        step), picking up a freed lock within about 20 ms.
        """
        px = _milliseconds(ttl)
        token = secrets.token_hex(16)
        full_key = self.prefix + key
        deadline = time.monotonic() + max(0.0, wait)
        pause = _FIRST_PAUSE
        while True:
            if await self._client.set(full_key, token, nx=True, px=px):
                return RedisLock(self, key, token)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(left, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def _release(self, key: str, token: str) -> bool:
        deleted = await self._release_script(keys=[self.prefix + key], args=[token])
        return bool(deleted)

    async def _extend(self, key: str, token: str, ttl: float) -> bool:
        px = _milliseconds(ttl)
        extended = await self._extend_script(keys=[self.prefix + key], args=[token, px])
        return bool(extended)

    # -- rate limits -----------------------------------------------------------------------

    async def rate_limit(self, key: str, *, rate: float, burst: int, cost: int = 1) -> RateDecision:
        """Atomic token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

        The arithmetic of ``marquee.platform.ratelimit.take``, run in Redis on Redis's clock,
        so all gateway instances share one bucket per key.
        """
        check_limits(rate=rate, burst=burst, cost=cost)
        allowed, remaining, retry_after, reset_after = await self._rate_limit_script(
            [self.prefix + key], [repr(float(rate)), str(burst), str(cost)]
        )
        return RateDecision(
            allowed=bool(allowed),
            limit=burst,
            remaining=int(remaining),
            retry_after=float(retry_after),
            reset_after=float(reset_after),
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise redis-py's ConnectionError (within ``connect_timeout``) if Redis is down."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the client and every pooled connection."""
        await self._client.aclose()


def _milliseconds(ttl: float) -> int:
    if not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return max(1, round(ttl * 1000))
