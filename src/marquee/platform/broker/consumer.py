"""Idempotent consumers: the broker delivers at least once, the visible effect happens once.

A consumer records each event id it has processed in the same transaction as the event's
effects. A redelivered event finds its id already there and changes nothing; if the effects
roll back, so does the record, and the redelivery applies them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.platform.broker import Event, Handler

log = logging.getLogger(__name__)

EffectHandler = Callable[[AsyncConnection, Event], Awaitable[None]]


def processed_events_table(metadata: MetaData, name: str = "processed_events") -> Table:
    """Which consumer has processed which event id, in ``metadata``."""
    return Table(
        name,
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


async def first_delivery(conn: AsyncConnection, table: Table, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` processes ``event_id``; True only the first time.

    Call it in the transaction that applies the event's effects. Concurrent deliveries of one
    event serialise on the primary key: the second waits for the first transaction and then
    gets False (or True, if the first rolled back).
    """
    values = {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}
    dialect = conn.dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"first_delivery does not support {dialect}")
    # Both drivers report the rows actually inserted: 0 when the conflict skipped the row.
    result = await conn.execute(stmt)
    return result.rowcount == 1


def idempotent(engine: AsyncEngine, table: Table, consumer: str, handler: EffectHandler) -> Handler:
    """A broker handler that runs ``handler(conn, event)`` once per event id for ``consumer``.

    Each delivery opens a transaction; the effects ``handler`` makes through ``conn`` commit
    together with the processed-event record, or not at all (and then the broker redelivers).
    Effects outside the database, such as sending an email, are at least once unless the
    handler records them in ``conn`` first.
    """

    async def handle(event: Event) -> None:
        async with engine.begin() as conn:
            if await first_delivery(conn, table, consumer, event.id):
                await handler(conn, event)
            else:
                log.info("%s already processed event %s (%s)", consumer, event.id, event.type)

    return handle
