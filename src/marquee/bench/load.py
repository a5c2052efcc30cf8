"""The load generator: many requests at a fixed concurrency over pooled keep-alive connections.

Every request names its client in ``X-Forwarded-For`` (the benchmark is a trusted proxy), so
the gateway's per-address rate limit sees each buyer separately. Latency is measured from just
before the request is written to the end of its answer's body.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from yarl import URL

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


class _Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time.

    The load generator shares the machine with the servers it measures, so it is kept lean:
    requests are written as ready-made bytes and answers are read by Content-Length (or
    chunks), with none of a general client's header handling. Any trouble closes the
    connection; the next request opens a new one.
    """

    def __init__(self) -> None:
        self._address: tuple[str, int] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, address: tuple[str, int], request: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._address != address:
            self.close()
            self._reader, self._writer = await asyncio.open_connection(*address)
            self._address = address
        assert self._reader is not None
        self._writer.write(request)
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.close()
            raise ConnectionResetError("the server closed the connection") from None
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        chunked = closing = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                closing = b"close" in value.lower()
        if chunked:
            body = await self._read_chunks()
        elif length >= 0:
            body = await self._reader.readexactly(length)
        else:
            body = await self._reader.read()
            closing = True
        if closing:
            self.close()
        return status, body

    async def _read_chunks(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def encode(call: Call) -> tuple[tuple[str, int], bytes]:
    """The address to connect to and the request's bytes."""
    url = URL(call.url)
    host, port = url.host or "127.0.0.1", url.port or 80
    lines = [
        f"{call.method} {url.raw_path_qs} HTTP/1.1",
        f"Host: {host}:{port}",
        f"X-Forwarded-For: {call.client}",
    ]
    if call.token:
        lines.append(f"Authorization: Bearer {call.token}")
    if call.body or call.method not in ("GET", "HEAD"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(call.body)}")
    return (host, port), ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + call.body


async def fire(
    calls: Iterable[Call],
    *,
    concurrency: int,
    timeout: float = 60.0,
    keep_body: Callable[[int], bool] = lambda status: True,
    on_answer: Callable[[Answer], None] | None = None,
) -> Run:
    """Send ``calls`` over at most ``concurrency`` connections, one request in flight on each;
    answers come back in completion order. ``keep_body(status)`` says whose bodies to keep."""
    pending = iter(calls)
    run = Run()

    async def worker() -> None:
        connection = _Connection()
        try:
            for call in pending:
                address, request = encode(call)
                started = time.perf_counter()
                error = ""
                try:
                    async with asyncio.timeout(timeout):
                        status, body = await connection.send(address, request)
                except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                    connection.close()
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
        finally:
            connection.close()

    cpu = time.process_time()
    run.started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.finished = time.perf_counter()
    run.client_cpu_seconds = time.process_time() - cpu
    return run


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the same event loop the servers use (uvloop when installed)."""
    from marquee.cli import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coro)


def latency_ms(answers: Sequence[Answer]) -> dict[str, float]:
    """p50, p95, p99, max and mean latency of the answers, in milliseconds."""
    latencies = sorted(answer.latency for answer in answers)
    return {
        "p50": 1000 * percentile(latencies, 0.50),
        "p95": 1000 * percentile(latencies, 0.95),
        "p99": 1000 * percentile(latencies, 0.99),
        "max": 1000 * (latencies[-1] if latencies else 0.0),
        "mean": 1000 * (statistics.fmean(latencies) if latencies else 0.0),
    }


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]
