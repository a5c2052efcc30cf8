"""The load generator: many requests at a fixed concurrency over pooled keep-alive connections.

Every request names its client in ``X-Forwarded-For`` (the benchmark is a trusted proxy), so
the gateway's per-address rate limit sees each buyer separately. Latency is measured from just
before the request is written to the end of its answer's body.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One request to send: ``client`` is the address named in X-Forwarded-For."""

    method: str
    url: str
    client: str
    body: bytes = b""
    token: str | None = None
    tag: int = 0  # the caller's own reference (a buyer's index, say)


@dataclass(frozen=True, slots=True)
class Answer:
    tag: int
    status: int  # 0: no answer (connection error or timeout)
    started: float  # perf_counter seconds
    finished: float
    body: bytes = b""
    error: str = ""

    @property
    def latency(self) -> float:
        return self.finished - self.started

    def json(self) -> object:
        return orjson.loads(self.body) if self.body else None


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    client_cpu_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def connector(concurrency: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ttl_dns_cache=None)


async def fire(
    calls: Iterable[Call],
    *,
    concurrency: int,
    timeout: float = 60.0,
    keep_body: Callable[[int], bool] = lambda status: True,
    on_answer: Callable[[Answer], None] | None = None,
) -> Run:
    """Send ``calls`` with at most ``concurrency`` in flight; answers come back in completion
    order. ``keep_body(status)`` says whose bodies to keep (the rest are read and dropped)."""
    pending = iter(calls)
    run = Run()
    limits = aiohttp.ClientTimeout(total=timeout)
    json_type = {"Content-Type": "application/json"}

    async def worker(http: aiohttp.ClientSession) -> None:
        for call in pending:
            headers = {"X-Forwarded-For": call.client}
            if call.body:
                headers.update(json_type)
            if call.token:
                headers["Authorization"] = f"Bearer {call.token}"
            started = time.perf_counter()
            try:
                async with http.request(
                    call.method, call.url, data=call.body or None, headers=headers
                ) as response:
                    body = await response.read()
                    status = response.status
                error = ""
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body, error = 0, b"", f"{type(exc).__name__}: {exc}"
            answer = Answer(
                call.tag,
                status,
                started,
                time.perf_counter(),
                body if keep_body(status) else b"",
                error,
            )
            run.answers.append(answer)
            if on_answer is not None:
                on_answer(answer)

    async with aiohttp.ClientSession(
        connector=connector(concurrency), timeout=limits, auto_decompress=False
    ) as http:
        cpu = time.process_time()
        run.started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        run.finished = time.perf_counter()
        run.client_cpu_seconds = time.process_time() - cpu
    return run


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the same event loop the servers use (uvloop when installed)."""
    from marquee.cli import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coro)


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]
