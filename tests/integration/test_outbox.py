"""The transactional outbox and idempotent consumers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Column, String, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.platform.broker import Event
from marquee.platform.broker.consumer import first_delivery, idempotent, processed_events_table
from marquee.platform.broker.memory import MemoryBroker
from marquee.platform.broker.outbox import OutboxRelay, add_to_outbox, outbox_table
from marquee.platform.db import create_engine, new_metadata
from tests import servers


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, polling every 10 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.01)


@dataclass
class Db:
    """A private database: an engine and this test's tables, created empty."""

    engine: AsyncEngine
    outbox: Table
    processed: Table
    effects: Table


@asynccontextmanager
async def private_database(url: str, schema: str) -> AsyncIterator[Db]:
    """Tables in a schema of their own (PostgreSQL, dropped after) or a fresh SQLite file."""
    metadata = new_metadata()
    db = Db(
        engine=create_engine(url, schema=schema, pool_size=4),
        outbox=outbox_table(metadata),
        processed=processed_events_table(metadata),
        # What a consumer "does"; no unique key, so a duplicate effect would show.
        effects=Table("effects", metadata, Column("event_id", String(64), nullable=False)),
    )
    postgres = url.startswith("postgresql")
    try:
        async with db.engine.begin() as conn:
            if postgres:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(metadata.create_all)
        yield db
    finally:
        if postgres:
            async with db.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await db.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the session's PostgreSQL database.

    Synchronous so that only the PostgreSQL variant asks for the server, and so it can: that
    session fixture runs an event loop of its own, which an async fixture could not start.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    async with private_database(database_url, servers.unique("outbox_")) as database:
        yield database


@pytest.fixture
async def postgres_db(postgres_url: str) -> AsyncIterator[Db]:
    async with private_database(postgres_url, servers.unique("outbox_")) as database:
        yield database


@dataclass
class Received:
    events: list[Event] = field(default_factory=list)

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.events]


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(prefix="marquee", retry_base=0.01, retry_cap=0.05)
    await broker.start()
    yield broker
    await broker.close()


@pytest.fixture
async def received(broker: MemoryBroker) -> Received:
    received = Received()
    await broker.subscribe("orders.>", "recorder", received)
    return received


class FlakyBroker:
    """Delegates to a real broker, failing the publishes whose 1-based numbers are listed."""

    def __init__(self, inner: MemoryBroker, *, fail: set[int]) -> None:
        self.inner, self.fail, self.calls = inner, fail, 0

    async def start(self) -> None: ...

    async def publish(self, event: Event) -> None:
        self.calls += 1
        if self.calls in self.fail:
            raise ConnectionError("broker unreachable (on purpose)")
        await self.inner.publish(event)

    async def subscribe(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class SlowBroker(FlakyBroker):
    """Takes a moment per publish, so concurrent relays overlap."""

    def __init__(self, inner: MemoryBroker) -> None:
        super().__init__(inner, fail=set())

    async def publish(self, event: Event) -> None:
        await asyncio.sleep(0.001)
        await super().publish(event)


def order_event(n: int, type_: str = "orders.created") -> Event:
    return Event(type=type_, data={"order_id": f"order-{n}"}, request_id=f"req-{n}")


async def place_orders(db: Db, *events: Event) -> None:
    """Stand-in for a use case: its data change and its events commit together."""
    async with db.engine.begin() as conn:
        await add_to_outbox(conn, db.outbox, *events)


# --- the outbox -----------------------------------------------------------------------------


async def test_an_event_added_in_a_committed_transaction_is_published_by_the_relay(
    db: Db, broker: MemoryBroker, received: Received
) -> None:
    relay = OutboxRelay(db.engine, db.outbox, broker, poll_interval=30)
    relay.start()
    try:
        events = [order_event(1), order_event(2, "orders.paid")]
        await place_orders(db, *events)
        relay.wake()  # a poll interval of 30 s: only the wake-up can make this quick

        # Counted once the rows are marked, which comes after the broker took the events.
        await eventually(lambda: relay.published == 2)
    finally:
        await relay.stop()
    assert received.events == events
    assert await relay.backlog() == 0


async def test_an_event_added_in_a_rolled_back_transaction_is_never_published(
    db: Db, broker: MemoryBroker, received: Received
) -> None:
    async def place_order_that_fails() -> None:
        async with db.engine.begin() as conn:
            await add_to_outbox(conn, db.outbox, order_event(1))
            raise RuntimeError("payment declined")

    with pytest.raises(RuntimeError, match="payment declined"):
        await place_order_that_fails()
    relay = OutboxRelay(db.engine, db.outbox, broker)

    assert await relay.backlog() == 0
    assert await relay.publish_pending() == 0
    assert broker.published == 0


async def test_events_left_by_a_process_that_died_are_published_once_by_the_next_relay(
    db: Db, broker: MemoryBroker, received: Received
) -> None:
    events = [order_event(n) for n in range(3)]
    await place_orders(db, *events)
    # The process that committed them died before its relay published anything.

    successor = OutboxRelay(db.engine, db.outbox, broker, poll_interval=0.01)
    assert await successor.backlog() == 3
    successor.start()
    try:
        await eventually(lambda: successor.published == 3)
        await asyncio.sleep(0.05)  # several more polls go by; none may publish again
    finally:
        await successor.stop()
    assert received.ids == [e.id for e in events]
    assert broker.published == 3
    assert await successor.backlog() == 0


async def test_a_broker_failure_part_way_keeps_what_was_published_and_retries_the_rest(
    db: Db, broker: MemoryBroker, received: Received
) -> None:
    events = [order_event(n) for n in range(3)]
    await place_orders(db, *events)
    relay = OutboxRelay(db.engine, db.outbox, FlakyBroker(broker, fail={2}))

    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert await relay.backlog() == 2
    assert await relay.publish_pending() == 2

    await eventually(lambda: len(received.events) == 3)
    assert received.ids == [e.id for e in events]


async def test_the_relay_survives_broker_outages_and_publishes_afterwards(
    db: Db, broker: MemoryBroker, received: Received
) -> None:
    relay = OutboxRelay(db.engine, db.outbox, FlakyBroker(broker, fail={1, 2}), poll_interval=0.01)
    relay.start()
    try:
        await place_orders(db, event := order_event(1))
        relay.wake()

        await eventually(lambda: relay.published == 1)
    finally:
        await relay.stop()
    assert received.ids == [event.id]
    assert await relay.backlog() == 0


async def test_stopping_the_relay_as_it_wakes_up_does_not_hang(
    db: Db, broker: MemoryBroker
) -> None:
    # A wake-up and a cancellation landing in the same loop iterations is a real race
    # (a commit just before shutdown); try it at each offset.
    for yields in range(4):
        await place_orders(db, order_event(yields))
        relay = await started_and_idle(OutboxRelay(db.engine, db.outbox, broker, poll_interval=30))
        relay.wake()
        for _ in range(yields):
            await asyncio.sleep(0)
        await asyncio.wait_for(relay.stop(), 2)


async def started_and_idle(relay: OutboxRelay) -> OutboxRelay:
    """Start a relay and return once it has published the one pending event and waits."""
    relay.start()
    await eventually(lambda: relay.published == 1)
    return relay


@pytest.mark.postgres
async def test_two_relays_running_at_once_on_postgres_publish_each_event_once(
    postgres_db: Db, broker: MemoryBroker, received: Received
) -> None:
    events = [order_event(n) for n in range(200)]
    await place_orders(postgres_db, *events)
    slow = SlowBroker(broker)
    relays = [OutboxRelay(postgres_db.engine, postgres_db.outbox, slow, batch=10) for _ in "ab"]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.publish_pending():
            pass

    await asyncio.gather(*(drain(relay) for relay in relays))

    await eventually(lambda: len(received.events) == 200)
    assert Counter(received.ids) == Counter(e.id for e in events)
    assert broker.published == 200
    assert all(relay.published > 0 for relay in relays), "the relays did not run concurrently"
    assert await relays[0].backlog() == 0


# --- idempotent consumers -------------------------------------------------------------------


async def test_first_delivery_is_true_once_per_consumer_and_event(db: Db) -> None:
    async with db.engine.begin() as conn:
        assert await first_delivery(conn, db.processed, "notification", "event-1") is True
    async with db.engine.begin() as conn:
        assert await first_delivery(conn, db.processed, "notification", "event-1") is False
        assert await first_delivery(conn, db.processed, "audit", "event-1") is True
        assert await first_delivery(conn, db.processed, "notification", "event-2") is True


async def test_a_rolled_back_first_delivery_does_not_count(db: Db) -> None:
    async with db.engine.connect() as conn:
        assert await first_delivery(conn, db.processed, "notification", "event-1") is True
        await conn.rollback()
    async with db.engine.begin() as conn:
        assert await first_delivery(conn, db.processed, "notification", "event-1") is True


async def subscribe_idempotent(
    db: Db, broker: MemoryBroker, effect: Callable[[AsyncConnection, Event], Awaitable[None]]
) -> list[str]:
    """Subscribe ``effect`` through ``idempotent``; returns the ids of committed deliveries."""
    handler = idempotent(db.engine, db.processed, "notification", effect)
    handled: list[str] = []

    async def deliver(event: Event) -> None:
        await handler(event)
        handled.append(event.id)  # only reached once the transaction has committed

    await broker.subscribe("orders.paid", "notification", deliver)
    return handled


async def count_effects(db: Db, event_id: str) -> int:
    async with db.engine.connect() as conn:
        query = select(func.count()).where(db.effects.c.event_id == event_id)
        return int((await conn.execute(query)).scalar_one())


async def test_an_event_delivered_twice_has_its_effect_once(db: Db, broker: MemoryBroker) -> None:
    applied: list[str] = []

    async def send_confirmation(conn: AsyncConnection, event: Event) -> None:
        await conn.execute(insert(db.effects).values(event_id=event.id))
        applied.append(event.id)

    handled = await subscribe_idempotent(db, broker, send_confirmation)
    event = order_event(1, "orders.paid")

    await broker.publish(event)
    await broker.publish(event)  # at-least-once delivery: the same event again

    await eventually(lambda: handled == [event.id, event.id])
    assert applied == [event.id]
    assert await count_effects(db, event.id) == 1


async def test_a_failed_handler_leaves_the_event_unprocessed_so_the_redelivery_applies_it(
    db: Db, broker: MemoryBroker
) -> None:
    attempts: list[str] = []

    async def send_confirmation(conn: AsyncConnection, event: Event) -> None:
        await conn.execute(insert(db.effects).values(event_id=event.id))
        attempts.append(event.id)
        if len(attempts) == 1:
            raise ConnectionError("mail server unreachable (on purpose)")

    handled = await subscribe_idempotent(db, broker, send_confirmation)

    await broker.publish(event := order_event(1, "orders.paid"))

    await eventually(lambda: handled == [event.id])
    assert attempts == [event.id, event.id]
    assert broker.redelivered == 1
    assert await count_effects(db, event.id) == 1
