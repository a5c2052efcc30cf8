"""SQL for received events and deliveries; rows mapped to domain objects here and only here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.notification.domain import Channel, Delivery, DeliveryStatus, Kind
from marquee.notification.models import deliveries, notification_events
from marquee.platform.broker import Event

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this worker holds until ``lease`` lapses, with the event to render it from."""

    delivery: Delivery
    token: str
    event_type: str
    request_id: str | None
    payload: dict[str, Any]


def _insert(conn: AsyncConnection, table: Any) -> postgresql.Insert | sqlite.Insert:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the notification repository does not support {dialect}")


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(
        id=int(m["id"]),
        event_id=m["event_id"],
        channel=Channel(m["channel"]),
        kind=Kind(m["kind"]),
        status=DeliveryStatus(m["status"]),
        attempts=int(m["attempts"]),
        last_error=m["last_error"],
        next_attempt_at=_utc(m["next_attempt_at"]),
        recipient=m["recipient"],
        subject=m["subject"],
        user_id=m["user_id"],
        order_id=m["order_id"],
        created_at=_utc(m["created_at"]),
        sent_at=_utc(m["sent_at"]) if m["sent_at"] is not None else None,
    )


async def add_event(conn: AsyncConnection, event: Event, *, now: datetime) -> bool:
    """Keep ``event`` for rendering; True only the first time its id is seen."""
    stmt = (
        _insert(conn, notification_events)
        .values(
            event_id=event.id,
            type=event.type,
            request_id=event.request_id,
            occurred_at=event.occurred_at.astimezone(UTC),
            payload=event.data,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    # RETURNING yields a row only when the insert happened, whatever the driver's rowcount.
    return (await conn.execute(stmt.returning(notification_events.c.event_id))).first() is not None


async def add_delivery(
    conn: AsyncConnection,
    *,
    event_id: str,
    channel: Channel,
    kind: Kind,
    subject: str,
    user_id: str,
    order_id: str,
    now: datetime,
    recipient: str | None = None,
) -> int | None:
    """A pending delivery due now; its id, or None when (event, channel) already has one.

    Concurrent inserts of one (event, channel) serialise on the unique key: one inserts, the
    others find it there. This is what makes a duplicated event send one message.
    """
    stmt = (
        _insert(conn, deliveries)
        .values(
            event_id=event_id,
            channel=channel.value,
            kind=kind.value,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            recipient=recipient,
            subject=subject,
            user_id=user_id,
            order_id=order_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["event_id", "channel"])
    )
    row = (await conn.execute(stmt.returning(deliveries.c.id))).first()
    return None if row is None else int(row[0])


async def claim_due(
    engine: AsyncEngine, *, now: datetime, lease_until: datetime, limit: int
) -> list[ClaimedDelivery]:
    """Take up to ``limit`` due pending deliveries for this worker until ``lease_until``.

    One conditional UPDATE claims them: only rows still pending and due change, so of several
    workers (processes) each row goes to one. It counts the attempt and pushes
    ``next_attempt_at`` to the end of the lease, so a worker that dies mid-send leaves the
    row to be claimed again once the lease lapses. On PostgreSQL the candidates are picked
    ``FOR UPDATE SKIP LOCKED``: concurrent workers take different rows instead of queueing.
    """
    d = deliveries
    token = uuid.uuid4().hex
    due = (d.c.status == DeliveryStatus.PENDING.value) & (d.c.next_attempt_at <= now)
    candidates = (
        select(d.c.id)
        .where(due)
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with engine.begin() as conn:
        claimed = await conn.execute(
            update(d)
            .where(d.c.id.in_(candidates.scalar_subquery()), due)
            .values(claim_token=token, attempts=d.c.attempts + 1, next_attempt_at=lease_until)
            .returning(d.c.id)
        )
        if not claimed.all():
            return []
        e = notification_events
        rows = await conn.execute(
            select(d, e.c.type, e.c.request_id, e.c.payload)
            .join(e, e.c.event_id == d.c.event_id)
            .where(d.c.claim_token == token)
            .order_by(d.c.id)
        )
        return [
            ClaimedDelivery(
                delivery=_delivery(row),
                token=token,
                event_type=row.type,
                request_id=row.request_id,
                payload=dict(row.payload),
            )
            for row in rows
        ]


async def mark_sent(
    engine: AsyncEngine, delivery_id: int, token: str, *, now: datetime, recipient: str | None
) -> bool:
    """Record the send; False if this worker's claim was lost (its lease lapsed and another
    worker took the delivery), in which case nothing changes."""
    d = deliveries
    async with engine.begin() as conn:
        result = await conn.execute(
            update(d)
            .where(d.c.id == delivery_id, d.c.claim_token == token)
            .values(
                status=DeliveryStatus.SENT.value,
                sent_at=now,
                last_error=None,
                claim_token=None,
                recipient=recipient,
            )
            .returning(d.c.id)
        )
        return result.first() is not None


async def mark_unsent(
    engine: AsyncEngine,
    delivery_id: int,
    token: str,
    *,
    status: DeliveryStatus,
    next_attempt_at: datetime,
    error: str,
    recipient: str | None,
) -> bool:
    """Record a failed attempt: pending again at ``next_attempt_at``, or failed for good.
    False if this worker's claim was lost."""
    d = deliveries
    values: dict[str, Any] = {
        "status": status.value,
        "next_attempt_at": next_attempt_at,
        "last_error": error[:MAX_ERROR_CHARS],
        "claim_token": None,
    }
    if recipient is not None:
        values["recipient"] = recipient
    async with engine.begin() as conn:
        result = await conn.execute(
            update(d)
            .where(d.c.id == delivery_id, d.c.claim_token == token)
            .values(**values)
            .returning(d.c.id)
        )
        return result.first() is not None


async def _page(
    engine: AsyncEngine, query: Select[Any], *, offset: int, limit: int
) -> tuple[list[Delivery], int]:
    d = deliveries
    async with engine.connect() as conn:
        total = (
            await conn.execute(select(func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = await conn.execute(
            query.order_by(d.c.created_at.desc(), d.c.id.desc()).offset(offset).limit(limit)
        )
        return [_delivery(row) for row in rows], int(total)


async def list_for_user(
    engine: AsyncEngine, user_id: str, *, offset: int, limit: int
) -> tuple[list[Delivery], int]:
    """One user's deliveries, newest first, and how many there are in all."""
    d = deliveries
    return await _page(engine, select(d).where(d.c.user_id == user_id), offset=offset, limit=limit)


async def list_deliveries(
    engine: AsyncEngine, *, status: DeliveryStatus | None, offset: int, limit: int
) -> tuple[list[Delivery], int]:
    """Every user's deliveries (optionally in one status), newest first, and the total."""
    d = deliveries
    query = select(d) if status is None else select(d).where(d.c.status == status.value)
    return await _page(engine, query, offset=offset, limit=limit)


async def get_delivery(engine: AsyncEngine, delivery_id: int) -> Delivery | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).first()
        return None if row is None else _delivery(row)


async def reset_failed(
    engine: AsyncEngine, ids: Sequence[int] | None, *, now: datetime
) -> list[int]:
    """Make failed deliveries (``ids``, or all when None) pending and due now, with a fresh
    attempt budget; the ids actually reset. Other statuses are left alone."""
    d = deliveries
    stmt = (
        update(d)
        .where(d.c.status == DeliveryStatus.FAILED.value)
        .values(
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            claim_token=None,
        )
        .returning(d.c.id)
    )
    if ids is not None:
        stmt = stmt.where(d.c.id.in_(list(ids)))
    async with engine.begin() as conn:
        return sorted(int(row[0]) for row in await conn.execute(stmt))
