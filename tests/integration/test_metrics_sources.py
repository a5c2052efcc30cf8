"""Scrape-time metric sources against the real engines: consumer lag from the in-process
broker and JetStream alike, outbox backlog and orders by state on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Column, String, Table, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.platform.broker import Event
from marquee.platform.broker.memory import MemoryBroker
from marquee.platform.broker.outbox import OutboxRelay, add_to_outbox, outbox_table
from marquee.platform.db import create_engine, new_metadata
from marquee.platform.metrics import (
    Sample,
    broker_source,
    orders_by_state_gauge,
    outbox_backlog_gauge,
    sources_of,
)
from marquee_nats import NatsBroker
from tests import servers

AnyBroker = MemoryBroker | NatsBroker


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.05)


def by_name(samples: list[Sample]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(s.family.name, s.labels): s.value for s in samples}


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[AnyBroker]:
    prefix = servers.unique("mqmetrics")
    opened: AnyBroker
    if request.param == "memory":
        opened = MemoryBroker(prefix=prefix)
    else:
        opened = NatsBroker(servers.require_nats(), prefix=prefix, fetch_timeout=1.0)
    await opened.start()
    yield opened
    if isinstance(opened, NatsBroker):
        await opened.destroy()
    await opened.close()


async def test_consumer_lag_counts_the_events_a_busy_group_has_not_taken_yet(
    broker: AnyBroker,
) -> None:
    handling, release = asyncio.Event(), asyncio.Event()

    async def slow(event: Event) -> None:
        handling.set()
        await release.wait()

    read = broker_source(broker)
    await broker.subscribe("orders.created", durable="notification", handler=slow)
    for _ in range(4):
        await broker.publish(Event(type="orders.created", data={}))
    await asyncio.wait_for(handling.wait(), 10)
    group = ("marquee_broker_consumer_lag", ("notification", "orders.created"))

    async def lag_is(expected: int) -> bool:
        return by_name(list(await read())).get(group) == expected

    # One event is in the handler; the other three wait.
    await eventually(lambda: lag_is(3))
    release.set()
    await eventually(lambda: lag_is(0))
    samples = by_name(list(await read()))
    assert samples[("marquee_broker_published", ())] == 4
    assert samples[("marquee_broker_delivered", ())] == 4
    assert samples[("marquee_broker_redelivered", ())] == 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a private schema (PostgreSQL, dropped after) or a fresh SQLite file."""
    schema = servers.unique("metrics_")
    postgres = database_url.startswith("postgresql")
    engine = create_engine(database_url, schema=schema, pool_size=2)
    if postgres:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield engine
    if postgres:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


async def test_the_outbox_backlog_is_what_the_relay_has_not_published(
    engine: AsyncEngine,
) -> None:
    metadata = new_metadata()
    outbox = outbox_table(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await add_to_outbox(conn, outbox, *(Event(type="orders.paid", data={}) for _ in range(3)))
    broker = MemoryBroker()
    await broker.start()
    relay = OutboxRelay(engine, outbox, broker)
    app = SimpleNamespace(state=SimpleNamespace(service="booking"))
    outbox_backlog_gauge(app, relay)
    read = sources_of(app)["booking.outbox"]
    try:
        waiting = by_name(list(await read()))
        assert await relay.publish_pending() == 3
        drained = by_name(list(await read()))
    finally:
        await broker.close()

    backlog = ("marquee_outbox_backlog", ("booking",))
    published = ("marquee_outbox_published", ("booking",))
    assert (waiting[backlog], waiting[published]) == (3, 0)
    assert (drained[backlog], drained[published]) == (0, 3)


async def test_orders_by_state_counts_every_state_zero_included(engine: AsyncEngine) -> None:
    metadata = new_metadata()
    orders = Table(
        "orders",
        metadata,
        Column("id", String(8), primary_key=True),
        Column("status", String(20), nullable=False),
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            insert(orders),
            [
                {"id": "o1", "status": "paid"},
                {"id": "o2", "status": "paid"},
                {"id": "o3", "status": "pending_payment"},
            ],
        )
    app = SimpleNamespace(state=SimpleNamespace(service="booking"))
    orders_by_state_gauge(app, orders.c.status, ["pending_payment", "paid", "cancelled"])
    read = sources_of(app)["booking.orders"]
    assert await read() == []  # before the lifespan has opened the database

    app.state.engine = engine
    counts = {labels[0]: value for (_, labels), value in by_name(list(await read())).items()}
    assert counts == {"pending_payment": 1, "paid": 2, "cancelled": 0}
