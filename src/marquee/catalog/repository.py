"""Catalog's SQL: rows in, domain objects out. Callers own the transaction.

Every change to inventory or to a reservation's status is a conditional ``UPDATE`` (a
compare-and-swap on the row's current state), so it is correct under any isolation level and
on both engines: on SQLite the statements before the first write run outside the write lock,
and on PostgreSQL a concurrent writer's row is re-checked after its lock is released.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from marquee.catalog.domain import (
    AreaId,
    Move,
    Reservation,
    ReservationId,
    SeatArea,
    Session,
    SessionId,
    Show,
    ShowId,
    ShowStatus,
    Stock,
    Venue,
    VenueId,
    from_minor,
    to_minor,
)
from marquee.catalog.models import reservations, seat_areas, sessions, shows, venues

# -- mapping -----------------------------------------------------------------------------


def _venue(row: RowMapping, p: str = "") -> Venue:
    return Venue(
        venue_id=VenueId(row[f"{p}id"]),
        name=row[f"{p}name"],
        city=row[f"{p}city"],
        address=row[f"{p}address"],
        timezone=row[f"{p}timezone"],
        created_at=row[f"{p}created_at"],
        updated_at=row[f"{p}updated_at"],
    )


def _show(row: RowMapping, p: str = "") -> Show:
    return Show(
        show_id=ShowId(row[f"{p}id"]),
        title=row[f"{p}title"],
        category=row[f"{p}category"],
        venue_id=VenueId(row[f"{p}venue_id"]),
        description=row[f"{p}description"],
        status=row[f"{p}status"],
        created_at=row[f"{p}created_at"],
        updated_at=row[f"{p}updated_at"],
    )


def _session(row: RowMapping, p: str = "") -> Session:
    return Session(
        session_id=SessionId(row[f"{p}id"]),
        show_id=ShowId(row[f"{p}show_id"]),
        starts_at=row[f"{p}starts_at"],
        ends_at=row[f"{p}ends_at"],
        sale_starts_at=row[f"{p}sale_starts_at"],
        sale_ends_at=row[f"{p}sale_ends_at"],
        per_user_limit=row[f"{p}per_user_limit"],
        created_at=row[f"{p}created_at"],
        updated_at=row[f"{p}updated_at"],
    )


def _area(row: RowMapping, p: str = "") -> SeatArea:
    return SeatArea(
        area_id=AreaId(row[f"{p}id"]),
        session_id=SessionId(row[f"{p}session_id"]),
        name=row[f"{p}name"],
        price=from_minor(row[f"{p}price_minor"]),
        currency=row[f"{p}currency"],
        stock=Stock(row[f"{p}capacity"], row[f"{p}reserved"], row[f"{p}sold"]),
        version=row[f"{p}version"],
        created_at=row[f"{p}created_at"],
        updated_at=row[f"{p}updated_at"],
    )


def _reservation(row: RowMapping) -> Reservation:
    return Reservation(
        reservation_id=ReservationId(row["id"]),
        session_id=SessionId(row["session_id"]),
        area_id=AreaId(row["area_id"]),
        quantity=row["quantity"],
        status=row["status"],
        expires_at=row["expires_at"],
        unit_price=from_minor(row["unit_price_minor"]),
        currency=row["currency"],
        release_reason=row["release_reason"],
    )


def _labelled(*tables: Any) -> list[ColumnElement[Any]]:
    """Every column of ``tables`` labelled ``<table>_<column>``, for one joined row."""
    return [column.label(f"{table.name}_{column.name}") for table in tables for column in table.c]


async def _one(conn: AsyncConnection, query: Select[Any]) -> RowMapping | None:
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def _update(
    conn: AsyncConnection, table: Any, key: str, values: Mapping[str, Any], now: datetime
) -> None:
    await conn.execute(update(table).where(table.c.id == key).values(**values, updated_at=now))


# -- venues ------------------------------------------------------------------------------


async def get_venue(conn: AsyncConnection, venue_id: str) -> Venue | None:
    row = await _one(conn, select(venues).where(venues.c.id == venue_id))
    return None if row is None else _venue(row)


async def find_venue(conn: AsyncConnection, name: str, city: str) -> Venue | None:
    row = await _one(conn, select(venues).where(venues.c.name == name, venues.c.city == city))
    return None if row is None else _venue(row)


async def insert_venue(conn: AsyncConnection, venue: Venue) -> None:
    """Raises IntegrityError if a venue of that name already exists in that city."""
    await conn.execute(
        insert(venues).values(
            id=venue.venue_id,
            name=venue.name,
            city=venue.city,
            address=venue.address,
            timezone=venue.timezone,
            created_at=venue.created_at,
            updated_at=venue.updated_at,
        )
    )


async def update_venue(
    conn: AsyncConnection, venue_id: str, values: Mapping[str, Any], now: datetime
) -> None:
    await _update(conn, venues, venue_id, values, now)


async def list_venues(
    conn: AsyncConnection, city: str | None, offset: int, limit: int
) -> tuple[list[Venue], int]:
    where = [venues.c.city == city] if city else []
    total = (await conn.execute(select(func.count()).select_from(venues).where(*where))).scalar()
    rows = await conn.execute(
        select(venues)
        .where(*where)
        .order_by(venues.c.city, venues.c.name, venues.c.id)
        .offset(offset)
        .limit(limit)
    )
    return [_venue(row) for row in rows.mappings()], int(total or 0)


# -- shows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShowFilter:
    """What a listing asks for; None means no restriction."""

    statuses: Sequence[ShowStatus]
    city: str | None = None
    category: str | None = None
    q: str | None = None
    date_from: date | None = None
    date_to: date | None = None


@dataclass(frozen=True, slots=True)
class ShowRow:
    """A show with its venue and the span of its sessions (None when it has none)."""

    show: Show
    venue: Venue
    first_starts_at: datetime | None
    last_starts_at: datetime | None


async def get_show(conn: AsyncConnection, show_id: str) -> Show | None:
    row = await _one(conn, select(shows).where(shows.c.id == show_id))
    return None if row is None else _show(row)


async def count_shows(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(shows))).scalar() or 0)


async def insert_show(conn: AsyncConnection, show: Show) -> None:
    await conn.execute(
        insert(shows).values(
            id=show.show_id,
            title=show.title,
            category=show.category,
            venue_id=show.venue_id,
            description=show.description,
            status=show.status,
            created_at=show.created_at,
            updated_at=show.updated_at,
        )
    )


async def update_show(
    conn: AsyncConnection, show_id: str, values: Mapping[str, Any], now: datetime
) -> None:
    await _update(conn, shows, show_id, values, now)


def _show_conditions(flt: ShowFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [shows.c.status.in_(list(flt.statuses))]
    if flt.city:
        where.append(venues.c.city == flt.city)
    if flt.category:
        where.append(shows.c.category == flt.category)
    if flt.q:
        where.append(
            or_(
                shows.c.title.icontains(flt.q, autoescape=True),
                venues.c.name.icontains(flt.q, autoescape=True),
            )
        )
    if flt.date_from or flt.date_to:
        in_range: list[ColumnElement[bool]] = [sessions.c.show_id == shows.c.id]
        if flt.date_from:
            in_range.append(sessions.c.local_date >= flt.date_from.isoformat())
        if flt.date_to:
            in_range.append(sessions.c.local_date <= flt.date_to.isoformat())
        where.append(exists().where(and_(*in_range)))
    return where


async def search_shows(
    conn: AsyncConnection, flt: ShowFilter, offset: int, limit: int
) -> tuple[list[ShowRow], int]:
    """One page of matching shows, soonest first session first (shows without sessions last),
    ties broken by ID so pages never overlap or skip; and the total number of matches."""
    where = _show_conditions(flt)
    joined = shows.join(venues, venues.c.id == shows.c.venue_id)
    total = (await conn.execute(select(func.count()).select_from(joined).where(*where))).scalar()
    span = (
        select(
            sessions.c.show_id,
            func.min(sessions.c.starts_at).label("first_starts_at"),
            func.max(sessions.c.starts_at).label("last_starts_at"),
        )
        .group_by(sessions.c.show_id)
        .subquery()
    )
    query = (
        select(*_labelled(shows, venues), span.c.first_starts_at, span.c.last_starts_at)
        .select_from(joined.outerjoin(span, span.c.show_id == shows.c.id))
        .where(*where)
        .order_by(span.c.first_starts_at.is_(None), span.c.first_starts_at, shows.c.id)
        .offset(offset)
        .limit(limit)
    )
    rows = (await conn.execute(query)).mappings().all()
    return [
        ShowRow(
            show=_show(row, "shows_"),
            venue=_venue(row, "venues_"),
            first_starts_at=row["first_starts_at"],
            last_starts_at=row["last_starts_at"],
        )
        for row in rows
    ], int(total or 0)


# -- sessions ----------------------------------------------------------------------------


async def get_session(conn: AsyncConnection, session_id: str) -> Session | None:
    row = await _one(conn, select(sessions).where(sessions.c.id == session_id))
    return None if row is None else _session(row)


async def insert_session(conn: AsyncConnection, session: Session, local_date: date) -> None:
    await conn.execute(
        insert(sessions).values(
            id=session.session_id,
            show_id=session.show_id,
            starts_at=session.starts_at,
            ends_at=session.ends_at,
            sale_starts_at=session.sale_starts_at,
            sale_ends_at=session.sale_ends_at,
            per_user_limit=session.per_user_limit,
            local_date=local_date.isoformat(),
            created_at=session.created_at,
            updated_at=session.updated_at,
        )
    )


async def update_session(
    conn: AsyncConnection, session_id: str, values: Mapping[str, Any], now: datetime
) -> None:
    await _update(conn, sessions, session_id, values, now)


async def set_local_dates(conn: AsyncConnection, dates: Iterable[tuple[str, date]]) -> None:
    for session_id, day in dates:
        await conn.execute(
            update(sessions).where(sessions.c.id == session_id).values(local_date=day.isoformat())
        )


async def sessions_of_shows(conn: AsyncConnection, show_ids: Sequence[str]) -> list[Session]:
    """Every session of these shows, by start time then ID."""
    if not show_ids:
        return []
    rows = await conn.execute(
        select(sessions)
        .where(sessions.c.show_id.in_(list(show_ids)))
        .order_by(sessions.c.starts_at, sessions.c.id)
    )
    return [_session(row) for row in rows.mappings()]


async def sessions_at_venue(conn: AsyncConnection, venue_id: str) -> list[Session]:
    rows = await conn.execute(
        select(sessions)
        .join(shows, shows.c.id == sessions.c.show_id)
        .where(shows.c.venue_id == venue_id)
    )
    return [_session(row) for row in rows.mappings()]


# -- seat areas and inventory -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AreaContext:
    """A seat area with everything around it: its session, show and venue."""

    area: SeatArea
    session: Session
    show: Show
    venue: Venue


async def get_area(conn: AsyncConnection, area_id: str) -> SeatArea | None:
    row = await _one(conn, select(seat_areas).where(seat_areas.c.id == area_id))
    return None if row is None else _area(row)


async def area_context(
    conn: AsyncConnection, session_id: str, area_id: str, *, lock: bool = False
) -> AreaContext | None:
    """The area ``area_id`` if it belongs to session ``session_id``, with its surroundings."""
    query = (
        select(*_labelled(seat_areas, sessions, shows, venues))
        .select_from(
            seat_areas.join(sessions, sessions.c.id == seat_areas.c.session_id)
            .join(shows, shows.c.id == sessions.c.show_id)
            .join(venues, venues.c.id == shows.c.venue_id)
        )
        .where(seat_areas.c.id == area_id, seat_areas.c.session_id == session_id)
    )
    if lock:
        # The area's row only: its counters are what a batch of holds decides on.
        query = query.with_for_update(of=seat_areas)
    row = await _one(conn, query)
    if row is None:
        return None
    return AreaContext(
        area=_area(row, "seat_areas_"),
        session=_session(row, "sessions_"),
        show=_show(row, "shows_"),
        venue=_venue(row, "venues_"),
    )


async def insert_area(conn: AsyncConnection, area: SeatArea) -> None:
    await conn.execute(
        insert(seat_areas).values(
            id=area.area_id,
            session_id=area.session_id,
            name=area.name,
            price_minor=to_minor(area.price),
            currency=area.currency,
            capacity=area.stock.capacity,
            reserved=area.stock.reserved,
            sold=area.stock.sold,
            version=area.version,
            created_at=area.created_at,
            updated_at=area.updated_at,
        )
    )


async def update_area(
    conn: AsyncConnection, area_id: str, values: Mapping[str, Any], now: datetime
) -> None:
    """Change an area's description or price; capacity goes through ``resize_area``."""
    await conn.execute(
        update(seat_areas)
        .where(seat_areas.c.id == area_id)
        .values(**values, version=seat_areas.c.version + 1, updated_at=now)
    )


async def resize_area(conn: AsyncConnection, area_id: str, capacity: int, now: datetime) -> bool:
    """Set the capacity unless it would fall below what is reserved plus sold (False then)."""
    result = await conn.execute(
        update(seat_areas)
        .where(seat_areas.c.id == area_id, seat_areas.c.reserved + seat_areas.c.sold <= capacity)
        .values(capacity=capacity, version=seat_areas.c.version + 1, updated_at=now)
    )
    return result.rowcount == 1


async def areas_of_sessions(conn: AsyncConnection, session_ids: Sequence[str]) -> list[SeatArea]:
    """The areas of these sessions, dearest first (as a box office lists them)."""
    if not session_ids:
        return []
    rows = await conn.execute(
        select(seat_areas)
        .where(seat_areas.c.session_id.in_(list(session_ids)))
        .order_by(seat_areas.c.price_minor.desc(), seat_areas.c.name, seat_areas.c.id)
    )
    return [_area(row) for row in rows.mappings()]


async def available(conn: AsyncConnection, area_id: str) -> int:
    free = seat_areas.c.capacity - seat_areas.c.reserved - seat_areas.c.sold
    value = (await conn.execute(select(free).where(seat_areas.c.id == area_id))).scalar()
    return int(value or 0)


async def hold_seats(
    conn: AsyncConnection, area_id: str, quantity: int, now: datetime
) -> int | None:
    """Compare-and-swap ``quantity`` seats from available to reserved.

    Returns the seats left afterwards, or None (nothing changed) when fewer than ``quantity``
    are available. The condition is checked against the row as it is when the write lock is
    held, so two buyers can never both take the last seat.
    """
    free = seat_areas.c.capacity - seat_areas.c.reserved - seat_areas.c.sold
    result = await conn.execute(
        update(seat_areas)
        .where(seat_areas.c.id == area_id, free >= quantity)
        .values(
            reserved=seat_areas.c.reserved + quantity,
            version=seat_areas.c.version + 1,
            updated_at=now,
        )
        .returning(free)
    )
    left = result.scalar()
    return None if left is None else int(left)


async def move_stock(
    conn: AsyncConnection, area_id: str, move: Move, quantity: int, now: datetime
) -> None:
    """Apply a reservation's transition to its area's counters (not ``Move.HOLD``: that is
    ``hold_seats``). Each update is conditional on the counter it takes from; a row left
    unchanged means the books disagree with the reservations, which must never pass silently.
    """
    c = seat_areas.c
    changes: dict[Move, tuple[ColumnElement[bool], dict[str, Any]]] = {
        Move.SELL: (
            c.reserved >= quantity,
            {"reserved": c.reserved - quantity, "sold": c.sold + quantity},
        ),
        Move.RETURN_HELD: (c.reserved >= quantity, {"reserved": c.reserved - quantity}),
        Move.RETURN_SOLD: (c.sold >= quantity, {"sold": c.sold - quantity}),
    }
    if move is Move.NOTHING:
        return
    if move not in changes:
        raise ValueError(f"move_stock cannot apply {move}")
    condition, values = changes[move]
    result = await conn.execute(
        update(seat_areas)
        .where(c.id == area_id, condition)
        .values(**values, version=c.version + 1, updated_at=now)
    )
    if result.rowcount != 1:
        raise RuntimeError(f"seat area {area_id} cannot {move.value} {quantity}: books disagree")


# -- reservations ------------------------------------------------------------------------


async def get_reservation(conn: AsyncConnection, reservation_id: str) -> Reservation | None:
    row = await _one(conn, select(reservations).where(reservations.c.id == reservation_id))
    return None if row is None else _reservation(row)


def _reservation_row(res: Reservation, now: datetime) -> dict[str, Any]:
    """A new reservation's columns."""
    return {
        "id": res.reservation_id,
        "session_id": res.session_id,
        "area_id": res.area_id,
        "quantity": res.quantity,
        "status": res.status,
        "release_reason": res.release_reason,
        "unit_price_minor": to_minor(res.unit_price),
        "currency": res.currency,
        "expires_at": res.expires_at,
        "created_at": now,
        "updated_at": now,
    }


async def insert_reservation(conn: AsyncConnection, res: Reservation, now: datetime) -> bool:
    """Insert the reservation unless one with its ID exists; False then (nothing written).

    A concurrent insert of the same ID makes this wait for that transaction: if it commits,
    this one finds the row; if it rolls back, this one inserts.
    """
    upsert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    result = await conn.execute(
        upsert(reservations)
        .values(**_reservation_row(res, now))
        .on_conflict_do_nothing(index_elements=[reservations.c.id])
    )
    return result.rowcount == 1


async def reservations_by_id(
    conn: AsyncConnection, reservation_ids: Sequence[str]
) -> dict[str, Reservation]:
    if not reservation_ids:
        return {}
    rows = await conn.execute(select(reservations).where(reservations.c.id.in_(reservation_ids)))
    return {row.id: _reservation(row) for row in rows.mappings()}


async def insert_new_reservations(
    conn: AsyncConnection, holds: Sequence[Reservation], now: datetime
) -> None:
    """Insert reservations known not to exist yet, in one round trip. A concurrent insert of
    one of their IDs makes this raise IntegrityError (the caller reruns its transaction)."""
    if not holds:
        return
    await conn.execute(insert(reservations), [_reservation_row(res, now) for res in holds])


async def change_status(
    conn: AsyncConnection, before: Reservation, after: Reservation, now: datetime
) -> bool:
    """Compare-and-swap the status from ``before``'s to ``after``'s; False if it had moved on."""
    result = await conn.execute(
        update(reservations)
        .where(reservations.c.id == before.reservation_id, reservations.c.status == before.status)
        .values(status=after.status, release_reason=after.release_reason, updated_at=now)
    )
    return result.rowcount == 1


async def expired_holds(conn: AsyncConnection, now: datetime, limit: int) -> list[Reservation]:
    """Held reservations past their expiry, oldest first, by area.

    On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``: several sweepers share the
    work without waiting on each other, and a row that a confirm holds is left for later.
    (SQLite has a single writer and no row locks; there the conditional status change is what
    keeps two sweepers from returning one hold twice.)
    """
    candidates = (
        select(reservations)
        .where(reservations.c.status == "held", reservations.c.expires_at <= now)
        .order_by(reservations.c.expires_at, reservations.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    rows = (await conn.execute(candidates)).mappings().all()
    found = [_reservation(row) for row in rows]
    # Areas in one order in every sweeper, so two of them cannot deadlock on area rows.
    return sorted(found, key=lambda res: (res.area_id, res.reservation_id))
