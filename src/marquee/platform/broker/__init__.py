"""Publish/subscribe with one event envelope; adapters are found through ``marquee.brokers``.

Delivery is at least once: a handler that raises gets the event again later. Consumers make the
visible effect exactly once by deduplicating on the event id (see ``consumer.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

import orjson

from marquee.platform.context import current_request_id
from marquee.platform.telemetry import current_traceparent

ENTRY_POINT_GROUP = "marquee.brokers"


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Event:
    """The envelope every event travels in: id, type, occurred_at, request_id, data.

    ``traceparent`` (W3C trace context, present only while tracing is on) links the event to
    the trace of the request that caused it, as ``request_id`` links it to that request's log
    lines; the JSON envelope carries it only when it is set.
    """

    type: str
    data: dict[str, Any]
    id: str = field(default_factory=_new_id)
    occurred_at: datetime = field(default_factory=_now)
    request_id: str | None = field(default_factory=current_request_id)
    traceparent: str | None = field(default_factory=current_traceparent)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "request_id": self.request_id,
            "data": self.data,
        }
        if self.traceparent is not None:
            body["traceparent"] = self.traceparent
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        body = orjson.loads(raw)
        return cls(
            id=body["id"],
            type=body["type"],
            occurred_at=datetime.fromisoformat(body["occurred_at"]),
            request_id=body.get("request_id"),
            data=body.get("data") or {},
            traceparent=body.get("traceparent"),
        )


Handler = Callable[[Event], Awaitable[None]]


class Broker(Protocol):
    """The port. Subjects are event types such as ``orders.created``; adapters add a prefix."""

    async def start(self) -> None:
        """Connect; raise a clear error if the broker cannot be reached."""
        ...

    async def publish(self, event: Event) -> None:
        """Publish on the subject ``event.type``; returns once the broker has accepted it."""
        ...

    async def subscribe(
        self, subject: str, durable: str, handler: Handler, *, max_deliver: int = 10
    ) -> None:
        """Deliver every event on ``subject`` to one member of the ``durable`` group.

        The event is acknowledged only after the handler returns; if it raises, the event is
        delivered again (with a backoff) up to ``max_deliver`` times. Different durable names
        each get every event.
        """
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class BrokerFactory(Protocol):
    def __call__(self, url: str, *, prefix: str) -> Broker: ...


def open_broker(url: str, *, prefix: str = "marquee") -> Broker:
    """Build the broker the URL's scheme names, looked up in the ``marquee.brokers`` group."""
    scheme = url.split("://", 1)[0]
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if scheme not in found:
        known = ", ".join(sorted(found)) or "none"
        hint = " (install the extra: pip install 'marquee[nats]')" if scheme == "nats" else ""
        raise ValueError(f"no broker plugin for {scheme}:// (installed: {known}){hint}")
    factory: BrokerFactory = found[scheme].load()
    return factory(url, prefix=prefix)
