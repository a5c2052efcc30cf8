"""The in-process broker: the default for all-in-one mode, one event loop, nothing to install.

Semantics match the NATS adapter where a single process can honour them: per subject and
durable name there is one group; each event goes to one handler of every group whose subject
matches (NATS wildcards ``*`` and ``>`` included); the event is acknowledged when the handler
returns; a handler that raises gets the event again after an exponential backoff with jitter,
up to ``max_deliver`` attempts, after which the event is logged as dead-lettered and dropped.

What it cannot do without a server: nothing is retained. An event published while no durable
group matches is gone, and events queued or in flight when ``close()`` runs are lost. Callers
that need more (several processes, survival across restarts) use ``nats://``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from marquee.platform.broker import Event, Handler
from marquee.platform.context import request_id_var
from marquee.platform.telemetry import consume_span, publish_span

log = logging.getLogger(__name__)


def redelivery_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before delivery ``attempt + 1`` after ``attempt`` failed (1-based).

    Exponential (``base * 2**(attempt-1)``) capped at ``cap``, with "equal jitter": somewhere
    between half and all of that, so handlers failing together do not retry in lockstep.
    """
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    want, have = pattern.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return index == len(want) - 1 and len(have) > index
        if index >= len(have) or (part != "*" and part != have[index]):
            return False
    return len(want) == len(have)


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once every one has finished.

    Cancels again while any is still running: code inside a task can swallow a cancellation
    that races with its own completion (``asyncio.wait_for`` does on Python 3.11), and a single
    cancel would then leave the caller waiting forever.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    # Everything is done; this only collects the outcomes so none is reported as unretrieved.
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(slots=True)
class _Delivery:
    raw: bytes
    attempt: int = 1


@dataclass(slots=True)
class _Group:
    """One durable subscription: a queue shared by one worker per subscribed handler."""

    subject: str
    durable: str
    max_deliver: int
    queue: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)


class MemoryBroker:
    """In-process publish/subscribe for one event loop (``memory://``).

    ``published``, ``delivered`` (handler invocations, redeliveries included), ``redelivered``
    and ``dead_lettered`` count since construction, and ``consumer_lag()`` reads the queues,
    for metrics.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        prefix: str = "marquee",
        retry_base: float = 0.05,
        retry_cap: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._groups: dict[tuple[str, str], _Group] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._started = False
        self._closed = False
        self.published = 0
        self.delivered = 0
        self.redelivered = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        self._check_open()
        self._started = True

    async def publish(self, event: Event) -> None:
        """Queue the event for every matching group; returns at once (no handler has run yet).

        The event travels as its JSON envelope, exactly as through NATS, so a payload that
        cannot be serialised fails here rather than only in distributed mode, and handlers
        never share (and mutate) the publisher's objects.
        """
        self._check_running()
        with publish_span(event, "memory") as traced:
            raw = traced.to_json()
        self.published += 1
        for group in self._groups.values():
            if subject_matches(group.subject, event.type):
                group.queue.put_nowait(_Delivery(raw))

    async def subscribe(
        self, subject: str, durable: str, handler: Handler, *, max_deliver: int = 10
    ) -> None:
        """Join (or create) the ``durable`` group on ``subject`` with one more worker.

        Every handler subscribed under one durable name and subject competes for the same
        queue, so each event reaches exactly one of them. ``max_deliver`` is fixed by the
        group's first subscriber.
        """
        self._check_running()
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        key = (subject, durable)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(subject, durable, max_deliver)
        worker = asyncio.create_task(self._work(group, handler), name=f"broker:{durable}:{subject}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def ping(self) -> None:
        self._check_running()

    async def consumer_lag(self) -> dict[tuple[str, str], int]:
        """Events queued for each (durable, subject) group and not yet handed to a handler
        (redeliveries waiting out their backoff are not counted until they are queued)."""
        return {(g.durable, g.subject): g.queue.qsize() for g in self._groups.values()}

    async def close(self) -> None:
        """Stop every worker and pending redelivery and wait for them; idempotent."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await cancel_and_wait(list(self._workers))
        self._groups.clear()

    async def _work(self, group: _Group, handler: Handler) -> None:
        while True:
            delivery = await group.queue.get()
            await self._deliver(group, handler, delivery)

    async def _deliver(self, group: _Group, handler: Handler, delivery: _Delivery) -> None:
        event = Event.from_json(delivery.raw)
        self.delivered += 1
        if delivery.attempt > 1:
            self.redelivered += 1
        # The handler's log lines carry the request that caused the event.
        context = request_id_var.set(event.request_id)
        try:
            with consume_span(event, "memory", group.durable, delivery.attempt):
                await handler(event)
        except Exception:
            if delivery.attempt >= group.max_deliver:
                self.dead_lettered += 1
                log.exception(
                    "dead-letter: dropping event %s (%s) for %s after %d attempts",
                    event.id,
                    event.type,
                    group.durable,
                    delivery.attempt,
                )
                return
            delay = redelivery_delay(delivery.attempt, base=self._retry_base, cap=self._retry_cap)
            log.exception(
                "handler %s failed on event %s (%s), attempt %d/%d; redelivering in %.2fs",
                group.durable,
                event.id,
                event.type,
                delivery.attempt,
                group.max_deliver,
                delay,
            )
            self._redeliver_later(group, _Delivery(delivery.raw, delivery.attempt + 1), delay)
        finally:
            request_id_var.reset(context)

    def _redeliver_later(self, group: _Group, delivery: _Delivery, delay: float) -> None:
        # A timer rather than a sleep, so the worker moves on to the next event meanwhile.
        def fire() -> None:
            self._timers.discard(timer)
            group.queue.put_nowait(delivery)

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the memory broker is closed")

    def _check_running(self) -> None:
        self._check_open()
        if not self._started:
            raise RuntimeError("the memory broker is not started; call start() first")
