"""Refusals an upstream lets the gateway repeat: the sold-out answer, given at the edge.

When a hot show sells out, every further purchase attempt gets the same answer: 409
``insufficient_inventory``, nothing left. Booking marks that answer with
``Marquee-Refusal-Max-Age: SECONDS``, meaning "for that long, anyone sending this same request
may be given this same answer". The gateway keeps it and answers the identical requests that
follow itself (after authenticating them and counting them against the rate limit as usual),
without a hop to Booking; after SECONDS the next such request goes through again and refreshes
it. Only refusals are ever kept, so a stale entry can turn a buyer away for at most SECONDS
after seats come back (an expiry, another gateway's cancellation); it can never sell one. A
successful write through the gateway (a cancellation, say) forgets every kept refusal at once,
so a buyer who cancels and orders again through the same gateway is never refused from memory.

"The same request" is the method, path, query and body bytes. A request carrying an
``Idempotency-Key`` never uses a kept answer (a replay must return the buyer's own order).
Each answer given from here carries the request's own request ID. Pure: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

MAX_AGE_HEADER = b"marquee-refusal-max-age"
MAX_AGE_CAP = 60.0  # seconds, whatever an upstream asks
MAX_KEY_BODY = 2048  # bytes; larger requests are never matched
CAPACITY = 1024  # distinct requests kept

Key = tuple[str, str, bytes, bytes]
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class KeptRefusal:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # without content-length
    problem: dict[str, object]
    until: float

    def render(self, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of this answer for the request ``request_id``."""
        body = orjson.dumps({**self.problem, "request_id": request_id})
        headers = [*self.headers, (b"content-length", b"%d" % len(body))]
        return self.status, headers, body


def max_age(headers: Headers) -> float | None:
    """The upstream's ``Marquee-Refusal-Max-Age`` in seconds (capped), or None."""
    for name, value in headers:
        if name == MAX_AGE_HEADER:
            try:
                seconds = float(value)
            except ValueError:
                return None
            if seconds != seconds or seconds <= 0:  # NaN or not positive
                return None
            return min(seconds, MAX_AGE_CAP)
    return None


class SharedRefusals:
    """The refusals kept, by request; at most ``capacity``, each until its max age."""

    def __init__(
        self, *, capacity: int = CAPACITY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.clock = clock
        self._kept: dict[Key, KeptRefusal] = {}
        self.served = 0

    @staticmethod
    def key(method: str, path: str, query: bytes, body: bytes) -> Key | None:
        if len(body) > MAX_KEY_BODY:
            return None
        return (method, path, query, body)

    def find(self, key: Key) -> KeptRefusal | None:
        kept = self._kept.get(key)
        if kept is None:
            return None
        if self.clock() >= kept.until:
            del self._kept[key]
            return None
        self.served += 1
        return kept

    def keep(self, key: Key, status: int, headers: Headers, body: bytes) -> None:
        """Keep a 4xx problem answer whose headers carry a max age; anything else is ignored."""
        seconds = max_age(headers)
        if seconds is None or not 400 <= status < 500:
            return
        try:
            problem = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(problem, dict):
            return
        if key not in self._kept and len(self._kept) >= self.capacity:
            self._evict()
        self._kept[key] = KeptRefusal(
            status,
            tuple(
                (name, value)
                for name, value in headers
                if name not in (MAX_AGE_HEADER, b"content-length")
            ),
            problem,
            self.clock() + seconds,
        )

    def forget(self) -> None:
        """Drop every kept refusal: a write just succeeded and may have returned seats."""
        self._kept.clear()

    def _evict(self) -> None:
        now = self.clock()
        for key in [k for k, kept in self._kept.items() if kept.until <= now]:
            del self._kept[key]
        while len(self._kept) >= self.capacity:
            del self._kept[next(iter(self._kept))]  # the oldest kept

    def __len__(self) -> int:
        return len(self._kept)


def without_max_age(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The headers to send on to the client: the max age is between upstream and gateway."""
    return [(name, value) for name, value in headers if name != MAX_AGE_HEADER]
