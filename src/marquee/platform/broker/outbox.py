"""Transactional outbox: events are saved with the change that caused them, then relayed.

A service adds its events to the outbox table inside the transaction that changes its data, so
an event exists if and only if the change committed. The relay publishes unpublished rows in
order and marks them; a row whose publisher died between commit and publish (or between
publish and mark) is published by the next relay run, so delivery is at least once and
consumers deduplicate on the event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.platform.broker import Broker, Event
from marquee.platform.db import is_postgres

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData, name: str = "outbox") -> Table:
    """The outbox table in ``metadata``: one row per event, ``published_at`` set once relayed."""
    table = Table(
        name,
        metadata,
        # SQLite only autoincrements an INTEGER PRIMARY KEY, so BIGINT becomes INTEGER there.
        Column(
            "seq",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("type", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True),
    )
    # The relay only ever looks for unpublished rows in order; a partial index keeps that
    # lookup small however many published rows accumulate.
    unpublished = table.c.published_at.is_(None)
    Index(
        f"ix_{name}_unpublished",
        table.c.seq,
        postgresql_where=unpublished,
        sqlite_where=unpublished,
    )
    return table


async def add_to_outbox(conn: AsyncConnection, table: Table, *events: Event) -> None:
    """Save ``events`` in the caller's open transaction; they go out only if it commits.

    Call ``OutboxRelay.wake()`` after the commit to publish at once rather than at the next poll.
    """
    if not events:
        return
    now = datetime.now(UTC)
    await conn.execute(
        insert(table),
        [
            {"event_id": e.id, "type": e.type, "payload": e.to_json(), "created_at": now}
            for e in events
        ],
    )


class OutboxRelay:
    """Publishes committed outbox rows to the broker, oldest first.

    On PostgreSQL any number of relays can run against one outbox: each claims its batch with
    ``FOR UPDATE SKIP LOCKED`` and holds the rows until they are published and marked. One
    relay publishes in commit order; several may interleave their batches. On SQLite run one
    relay per database (all-in-one mode has exactly one).

    ``published`` counts events published since construction, for metrics.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        broker: Broker,
        *,
        batch: int = 100,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._engine = engine
        self._table = table
        self._broker = broker
        self._batch = batch
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._locking = is_postgres(engine)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    async def publish_pending(self) -> int:
        """Publish up to ``batch`` unpublished events in order and mark them; return how many.

        If the broker fails part-way, the events already published are still marked and the
        error is raised; the rest wait for the next call.
        """
        if self._locking:
            async with self._engine.begin() as conn:
                rows = await self._claim(conn)
                done, failure = await self._publish(rows)
                await self._mark(conn, done)
        else:
            # SQLite: read, publish and mark in separate transactions. A read transaction that
            # later writes fails with SQLITE_BUSY when another connection committed meanwhile,
            # which the service's own writes would make routine; with a single relay nothing
            # else claims these rows.
            async with self._engine.connect() as conn:
                rows = await self._claim(conn)
            done, failure = await self._publish(rows)
            if done:
                async with self._engine.begin() as conn:
                    await self._mark(conn, done)
        self.published += len(done)
        if failure is not None:
            raise failure
        return len(done)

    async def backlog(self) -> int:
        """How many committed events are waiting to be published."""
        t = self._table
        async with self._engine.connect() as conn:
            query = select(func.count()).select_from(t).where(t.c.published_at.is_(None))
            return int((await conn.execute(query)).scalar_one())

    def wake(self) -> None:
        """Publish now instead of at the next poll (call after committing outbox rows)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until cancelled: at start, on ``wake()`` and every ``poll_interval``.

        Errors (database or broker down) are logged and retried with a growing delay; the loop
        only ends by cancellation.
        """
        failures = 0
        while True:
            # Clear before publishing so a wake() arriving mid-run triggers another pass.
            self._wakeup.clear()
            try:
                while await self.publish_pending() == self._batch:
                    pass  # a full batch means more may be waiting
            except Exception:
                failures += 1
                ceiling = min(self._max_backoff, self._poll_interval * 2.0 ** min(failures, 16))
                delay = ceiling / 2 + random.uniform(0, ceiling / 2)
                log.exception(
                    "outbox relay failed (%d in a row); retrying in %.1fs", failures, delay
                )
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("outbox relay recovered after %d failures", failures)
                failures = 0
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives just as the wake-up does, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wakeup.wait()

    def start(self) -> None:
        """Run the relay in a background task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"outbox-relay:{self._table.name}")

    async def stop(self) -> None:
        """Cancel the background task and wait for it; unpublished rows stay for the next run."""
        task, self._task = self._task, None
        if task is None:
            return
        # Cancel until it is done: a broker client inside publish() may swallow one
        # cancellation (asyncio.wait_for does on Python 3.11 when its result arrives at once).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        await asyncio.gather(task, return_exceptions=True)

    async def _claim(self, conn: AsyncConnection) -> list[tuple[int, bytes]]:
        t = self._table
        query = (
            select(t.c.seq, t.c.payload)
            .where(t.c.published_at.is_(None))
            .order_by(t.c.seq)
            .limit(self._batch)
        )
        if self._locking:
            query = query.with_for_update(skip_locked=True)
        return [(seq, payload) for seq, payload in (await conn.execute(query)).all()]

    async def _publish(self, rows: list[tuple[int, bytes]]) -> tuple[list[int], Exception | None]:
        done: list[int] = []
        for seq, payload in rows:
            try:
                await self._broker.publish(Event.from_json(payload))
            except Exception as exc:
                return done, exc
            done.append(seq)
        return done, None

    async def _mark(self, conn: AsyncConnection, seqs: list[int]) -> None:
        if not seqs:
            return
        t = self._table
        await conn.execute(
            update(t).where(t.c.seq.in_(seqs)).values(published_at=datetime.now(UTC))
        )
