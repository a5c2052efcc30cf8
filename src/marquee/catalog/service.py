"""Catalog's use cases: browse, administer, and keep the inventory of record for Booking.

Every write runs in one transaction with bounded retries on transient database errors
(serialisation failures, deadlocks, a busy SQLite file). Inventory decisions are made by the
database's conditional updates, never by an earlier read; the domain says which move a
transition makes, the repository makes it atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.catalog import domain
from marquee.catalog import repository as repo
from marquee.catalog.client import Availability, HoldRequest
from marquee.catalog.client import Reservation as ReservationOut
from marquee.catalog.domain import (
    DEFAULT_TIMEZONE,
    PUBLIC_STATUSES,
    AreaId,
    CapacityBelowTakenError,
    CatalogError,
    DuplicateError,
    InsufficientInventoryError,
    InvalidInputError,
    Move,
    NotFoundError,
    NotOnSaleError,
    Reservation,
    ReservationConflictError,
    ReservationId,
    ReservationReleasedError,
    SeatArea,
    Session,
    SessionId,
    Show,
    ShowId,
    ShowStatus,
    Stock,
    Venue,
    VenueId,
)
from marquee.catalog.schemas import (
    AdminSeatArea,
    AdminSession,
    AdminShow,
    AdminShowPage,
    SeatAreaView,
    SessionAvailability,
    SessionBrief,
    SessionList,
    SessionView,
    ShowDetail,
    ShowPage,
    ShowSummary,
    VenueOut,
    VenuePage,
    to_json,
)
from marquee.platform import db
from marquee.platform.cache import Cache

log = logging.getLogger("marquee.catalog")

T = TypeVar("T")
Clock = Callable[[], datetime]

# PostgreSQL's serialization_failure and deadlock_detected: the transaction can simply rerun.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
SWEEP_BATCH = 200


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A readable, unguessable ID such as ``show-3f2a9c1b7d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def is_transient(exc: DBAPIError) -> bool:
    """A database error that says "try again", not "you are wrong"."""
    if getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message


class ListingCache:
    """Public listings as ready JSON in the shared cache, for ``ttl`` seconds at most.

    Every key embeds a version number that each admin change bumps, so a change is visible
    on the next request in every instance; the TTL bounds staleness should a bump be lost.
    A cache outage degrades to reading the database, never to an error.
    """

    VERSION_KEY = "catalog:listings:version"

    def __init__(self, cache: Cache, ttl: float) -> None:
        self.cache = cache
        self.ttl = ttl

    async def fetch(self, name: str, build: Callable[[], Awaitable[bytes]]) -> bytes:
        try:
            version = await self.cache.counter_get(self.VERSION_KEY) or 0
        except Exception as exc:
            log.warning("Listing cache unavailable, reading the database: %s", exc)
            return await build()
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        key = f"catalog:listings:{version}:{digest}"
        try:
            hit = await self.cache.get(key)
        except Exception as exc:
            log.warning("Listing cache read failed: %s", exc)
            hit = None
        if hit is not None:
            return hit
        body = await build()
        try:
            await self.cache.set(key, body, ttl=self.ttl)
        except Exception as exc:
            log.warning("Listing cache write failed: %s", exc)
        return body

    async def invalidate(self) -> None:
        try:
            await self.cache.counter_add(self.VERSION_KEY, 1)
        except Exception as exc:
            log.error("Could not invalidate listings (stale for up to %ss): %s", self.ttl, exc)


class CatalogService:
    """The catalog's use cases over its database and the shared cache.

    ``clock`` gives the current UTC time (injected so tests control expiry); ``attempts``
    bounds how often a transaction reruns after a transient database error.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache,
        *,
        clock: Clock = utc_now,
        listing_ttl: float = 10.0,
        attempts: int = 6,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.listings = ListingCache(cache, listing_ttl)
        self.attempts = attempts

    # -- plumbing -----------------------------------------------------------------------

    async def _write(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        retry_on_integrity: bool = False,
    ) -> T:
        """Run ``work`` in a transaction, rerunning it (bounded, with jittered backoff) after a
        transient error, or after an integrity error when a concurrent insert of the same key
        can explain it and the rerun will see that row."""
        for attempt in range(1, self.attempts + 1):
            try:
                async with self.engine.begin() as conn:
                    return await work(conn)
            except IntegrityError:
                if not retry_on_integrity or attempt == self.attempts:
                    raise
            except DBAPIError as exc:
                if not is_transient(exc) or attempt == self.attempts:
                    raise
                log.info("Transient database error, attempt %d: %s", attempt, exc.orig)
            await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run read-only ``work``. On PostgreSQL without a transaction: each statement sees
        committed data, and the BEGIN and ROLLBACK round trips are saved (availability checks
        are on Booking's hot path)."""
        async with self.engine.connect() as conn:
            if db.may_read_outside_a_transaction(conn):
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await work(conn)

    async def _admin_write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        result = await self._write(work, retry_on_integrity=True)
        await self.listings.invalidate()
        return result

    # -- venues -------------------------------------------------------------------------

    async def create_venue(
        self, *, name: str, city: str, address: str = "", timezone: str = DEFAULT_TIMEZONE
    ) -> VenueOut:
        domain.zone(timezone)
        now = self.clock()
        venue = Venue(VenueId(new_id("venue")), name, city, address, timezone, now, now)

        async def work(conn: AsyncConnection) -> Venue:
            existing = await repo.find_venue(conn, name, city)
            if existing is not None:
                raise DuplicateError(
                    "venue", f"{city} already has a venue named {name!r}.", existing.venue_id
                )
            await repo.insert_venue(conn, venue)
            return venue

        return _venue_out(await self._admin_write(work))

    async def update_venue(self, venue_id: str, changes: Mapping[str, Any]) -> VenueOut:
        if "timezone" in changes:
            domain.zone(changes["timezone"])
        now = self.clock()

        async def work(conn: AsyncConnection) -> Venue:
            venue = await _must(repo.get_venue(conn, venue_id), "venue", venue_id)
            after = replace(venue, **changes)
            if (after.name, after.city) != (venue.name, venue.city):
                clash = await repo.find_venue(conn, after.name, after.city)
                if clash is not None:
                    raise DuplicateError(
                        "venue",
                        f"{after.city} already has a venue named {after.name!r}.",
                        clash.venue_id,
                    )
            await repo.update_venue(conn, venue_id, changes, now)
            if after.timezone != venue.timezone:
                # Local dates (the date filters) follow the venue's clock.
                held = await repo.sessions_at_venue(conn, venue_id)
                await repo.set_local_dates(
                    conn,
                    ((s.session_id, domain.local_date(s.starts_at, after.timezone)) for s in held),
                )
            return replace(after, updated_at=now)

        return _venue_out(await self._admin_write(work))

    async def get_venue(self, venue_id: str) -> VenueOut:
        async def work(conn: AsyncConnection) -> Venue:
            return await _must(repo.get_venue(conn, venue_id), "venue", venue_id)

        return _venue_out(await self._read(work))

    async def list_venues(self, *, city: str | None, page: int, page_size: int) -> VenuePage:
        async def work(conn: AsyncConnection) -> tuple[list[Venue], int]:
            return await repo.list_venues(conn, city, (page - 1) * page_size, page_size)

        found, total = await self._read(work)
        return VenuePage(
            venues=[_venue_out(v) for v in found], page=page, page_size=page_size, total=total
        )

    # -- shows --------------------------------------------------------------------------

    async def _resolve_venue(
        self,
        conn: AsyncConnection,
        venue_id: str | None,
        venue_name: str | None,
        city: str | None,
        now: datetime,
    ) -> Venue:
        if venue_id is not None:
            venue = await repo.get_venue(conn, venue_id)
            if venue is None:
                raise NotFoundError("venue", venue_id)
            return venue
        assert venue_name is not None
        assert city is not None
        venue = await repo.find_venue(conn, venue_name, city)
        if venue is None:
            venue = Venue(
                VenueId(new_id("venue")), venue_name, city, "", DEFAULT_TIMEZONE, now, now
            )
            # A concurrent create of the same venue fails this insert; the rerun finds it.
            await repo.insert_venue(conn, venue)
        return venue

    async def create_show(
        self,
        *,
        title: str,
        category: str,
        venue_id: str | None = None,
        venue: str | None = None,
        city: str | None = None,
        description: str = "",
        status: ShowStatus = "draft",
        show_id: str | None = None,
    ) -> AdminShow:
        """A show at a venue named by ID, or by name and city (created when new)."""
        now = self.clock()
        new_show_id = ShowId(show_id or new_id("show"))

        async def work(conn: AsyncConnection) -> AdminShow:
            place = await self._resolve_venue(conn, venue_id, venue, city, now)
            show = Show(new_show_id, title, category, place.venue_id, description, status, now, now)
            await repo.insert_show(conn, show)
            return _admin_show(repo.ShowRow(show, place, None, None))

        return await self._admin_write(work)

    async def update_show(self, show_id: str, changes: Mapping[str, Any]) -> AdminShow:
        now = self.clock()
        fields = dict(changes)
        venue_id = fields.pop("venue_id", None)
        venue_name = fields.pop("venue", None)
        city = fields.pop("city", None)

        async def work(conn: AsyncConnection) -> AdminShow:
            show = await _must(repo.get_show(conn, show_id), "show", show_id)
            values = dict(fields)
            if venue_id is not None or venue_name is not None:
                place = await self._resolve_venue(conn, venue_id, venue_name, city, now)
                values["venue_id"] = place.venue_id
            if values:
                await repo.update_show(conn, show_id, values, now)
            if values.get("venue_id", show.venue_id) != show.venue_id:
                await self._refresh_local_dates(conn, show_id)
            return await self._admin_show_row(conn, show_id)

        return await self._admin_write(work)

    async def _refresh_local_dates(self, conn: AsyncConnection, show_id: str) -> None:
        show = await _must(repo.get_show(conn, show_id), "show", show_id)
        venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
        held = await repo.sessions_of_shows(conn, [show_id])
        await repo.set_local_dates(
            conn, ((s.session_id, domain.local_date(s.starts_at, venue.timezone)) for s in held)
        )

    async def _admin_show_row(self, conn: AsyncConnection, show_id: str) -> AdminShow:
        show = await _must(repo.get_show(conn, show_id), "show", show_id)
        venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
        held = await repo.sessions_of_shows(conn, [show_id])
        first = held[0].starts_at if held else None
        last = max(s.starts_at for s in held) if held else None
        return _admin_show(repo.ShowRow(show, venue, first, last))

    async def get_show_admin(self, show_id: str) -> AdminShow:
        async def work(conn: AsyncConnection) -> AdminShow:
            return await self._admin_show_row(conn, show_id)

        return await self._read(work)

    async def list_shows_admin(
        self, flt: repo.ShowFilter, *, page: int, page_size: int
    ) -> AdminShowPage:
        async def work(conn: AsyncConnection) -> tuple[list[repo.ShowRow], int]:
            return await repo.search_shows(conn, flt, (page - 1) * page_size, page_size)

        rows, total = await self._read(work)
        return AdminShowPage(
            shows=[_admin_show(row) for row in rows], page=page, page_size=page_size, total=total
        )

    # -- sessions -----------------------------------------------------------------------

    async def create_session(
        self,
        show_id: str,
        *,
        starts_at: datetime,
        ends_at: datetime,
        sale_starts_at: datetime | None = None,
        sale_ends_at: datetime | None = None,
        per_user_limit: int = 4,
        session_id: str | None = None,
    ) -> AdminSession:
        if per_user_limit < 1:
            raise InvalidInputError("per_user_limit", "must be at least 1")
        now = self.clock()
        times = [domain.as_utc(t) if t else None for t in (sale_starts_at, sale_ends_at)]
        starts_at, ends_at = domain.as_utc(starts_at), domain.as_utc(ends_at)
        domain.check_schedule(starts_at, ends_at, times[0], times[1])
        session = Session(
            SessionId(session_id or new_id("session")),
            ShowId(show_id),
            starts_at,
            ends_at,
            times[0],
            times[1],
            per_user_limit,
            now,
            now,
        )

        async def work(conn: AsyncConnection) -> AdminSession:
            show = await _must(repo.get_show(conn, show_id), "show", show_id)
            venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
            await repo.insert_session(conn, session, domain.local_date(starts_at, venue.timezone))
            return _admin_session(session, show, venue, now)

        return await self._admin_write(work)

    async def update_session(self, session_id: str, changes: Mapping[str, Any]) -> AdminSession:
        now = self.clock()
        values: dict[str, Any] = {
            k: domain.as_utc(v) if isinstance(v, datetime) else v for k, v in changes.items()
        }

        async def work(conn: AsyncConnection) -> AdminSession:
            session = await _must(repo.get_session(conn, session_id), "session", session_id)
            show = await _must(repo.get_show(conn, session.show_id), "show", session.show_id)
            venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
            after = replace(session, **values, updated_at=now)
            domain.check_new_schedule(session, after)
            stored = dict(values)
            stored["local_date"] = domain.local_date(after.starts_at, venue.timezone).isoformat()
            await repo.update_session(conn, session_id, stored, now)
            return _admin_session(after, show, venue, now)

        return await self._admin_write(work)

    async def get_session_admin(self, session_id: str) -> AdminSession:
        now = self.clock()

        async def work(conn: AsyncConnection) -> AdminSession:
            session = await _must(repo.get_session(conn, session_id), "session", session_id)
            show = await _must(repo.get_show(conn, session.show_id), "show", session.show_id)
            venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
            return _admin_session(session, show, venue, now)

        return await self._read(work)

    async def list_sessions_admin(self, show_id: str) -> list[AdminSession]:
        now = self.clock()

        async def work(conn: AsyncConnection) -> list[AdminSession]:
            show = await _must(repo.get_show(conn, show_id), "show", show_id)
            venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
            held = await repo.sessions_of_shows(conn, [show_id])
            return [_admin_session(s, show, venue, now) for s in held]

        return await self._read(work)

    # -- seat areas ---------------------------------------------------------------------

    async def create_area(
        self,
        session_id: str,
        *,
        name: str,
        price: Decimal,
        capacity: int,
        currency: str = domain.DEFAULT_CURRENCY,
        area_id: str | None = None,
    ) -> AdminSeatArea:
        domain.to_minor(price)
        domain.check_currency(currency)
        if capacity < 0:
            raise InvalidInputError("capacity", "must be at least 0")
        now = self.clock()
        area = SeatArea(
            AreaId(area_id or new_id("area")),
            SessionId(session_id),
            name,
            price,
            currency,
            Stock(capacity),
            0,
            now,
            now,
        )

        async def work(conn: AsyncConnection) -> SeatArea:
            await _must(repo.get_session(conn, session_id), "session", session_id)
            await repo.insert_area(conn, area)
            return area

        return _admin_area(await self._admin_write(work))

    async def update_area(self, area_id: str, changes: Mapping[str, Any]) -> AdminSeatArea:
        """Rename, reprice or resize an area. Capacity never drops below reserved plus sold
        (CapacityBelowTakenError, with what is taken). Holds keep the price they were made at."""
        values = dict(changes)
        capacity = values.pop("capacity", None)
        if "price" in values:
            values["price_minor"] = domain.to_minor(values.pop("price"))
        if "currency" in values:
            domain.check_currency(values["currency"])
        now = self.clock()

        async def work(conn: AsyncConnection) -> SeatArea:
            area = await _must(repo.get_area(conn, area_id), "seat area", area_id)
            if capacity is not None:
                # The conditional update decides; the domain explains a refusal with the
                # counts it saw (a second read only if seats were given back in between).
                for _ in range(2):
                    if await repo.resize_area(conn, area_id, capacity, now):
                        break
                    area = await _must(repo.get_area(conn, area_id), "seat area", area_id)
                    area.stock.resize(capacity)
                else:
                    stock = area.stock
                    raise CapacityBelowTakenError(capacity, stock.reserved, stock.sold)
            if values:
                await repo.update_area(conn, area_id, values, now)
            return await _must(repo.get_area(conn, area_id), "seat area", area_id)

        return _admin_area(await self._admin_write(work))

    async def get_area_admin(self, area_id: str) -> AdminSeatArea:
        async def work(conn: AsyncConnection) -> SeatArea:
            return await _must(repo.get_area(conn, area_id), "seat area", area_id)

        return _admin_area(await self._read(work))

    async def list_areas_admin(self, session_id: str) -> list[AdminSeatArea]:
        async def work(conn: AsyncConnection) -> list[SeatArea]:
            await _must(repo.get_session(conn, session_id), "session", session_id)
            return await repo.areas_of_sessions(conn, [session_id])

        return [_admin_area(a) for a in await self._read(work)]

    # -- public browsing ----------------------------------------------------------------

    async def browse_shows(
        self,
        *,
        city: str | None = None,
        category: str | None = None,
        q: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> bytes:
        """One page of public shows as JSON (a ShowPage), served from the listing cache."""
        flt = repo.ShowFilter(PUBLIC_STATUSES, city, category, q, date_from, date_to)
        offset = (page - 1) * page_size

        async def build() -> bytes:
            async def work(conn: AsyncConnection) -> tuple[list[repo.ShowRow], int]:
                return await repo.search_shows(conn, flt, offset, page_size)

            rows, total = await self._read(work)
            return to_json(
                ShowPage(
                    shows=[_summary(row) for row in rows],
                    page=page,
                    page_size=page_size,
                    total=total,
                )
            )

        key = orjson.dumps(
            ["shows", city, category, q, date_from, date_to, page, page_size]
        ).decode()
        return await self.listings.fetch(key, build)

    async def show_detail(self, show_id: str) -> bytes:
        """A public show's details and session times as JSON (a ShowDetail), cached."""

        async def build() -> bytes:
            async def work(conn: AsyncConnection) -> ShowDetail:
                show = await repo.get_show(conn, show_id)
                if show is None or not show.public:
                    raise NotFoundError("show", show_id)
                venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
                held = await repo.sessions_of_shows(conn, [show_id])
                first = held[0].starts_at if held else None
                last = max(s.starts_at for s in held) if held else None
                summary = _summary(repo.ShowRow(show, venue, first, last))
                return ShowDetail(
                    **summary.model_dump(),
                    description=show.description,
                    address=venue.address,
                    timezone=venue.timezone,
                    sessions=[
                        SessionBrief(
                            session_id=s.session_id,
                            date=domain.display_time(s.starts_at, venue.timezone),
                            starts_at=s.starts_at,
                            ends_at=s.ends_at,
                        )
                        for s in held
                    ],
                )

            return to_json(await self._read(work))

        return await self.listings.fetch(orjson.dumps(["show", show_id]).decode(), build)

    async def show_sessions(self, show_id: str) -> SessionList:
        """A public show's sessions with each seat area's live availability."""
        now = self.clock()

        async def work(conn: AsyncConnection) -> SessionList:
            show = await repo.get_show(conn, show_id)
            if show is None or not show.public:
                raise NotFoundError("show", show_id)
            venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
            held = await repo.sessions_of_shows(conn, [show_id])
            areas = await repo.areas_of_sessions(conn, [s.session_id for s in held])
            by_session: dict[str, list[SeatAreaView]] = {}
            for area in areas:
                by_session.setdefault(area.session_id, []).append(_area_view(area))
            return SessionList(
                show_id=show_id,
                sessions=[
                    SessionView(
                        session_id=s.session_id,
                        date=domain.display_time(s.starts_at, venue.timezone),
                        starts_at=s.starts_at,
                        ends_at=s.ends_at,
                        sale_starts_at=s.sale_starts_at,
                        sale_ends_at=s.sale_ends_at,
                        on_sale=_on_sale(show, s, now),
                        per_user_limit=s.per_user_limit,
                        seat_areas=by_session.get(s.session_id, []),
                    )
                    for s in held
                ],
            )

        return await self._read(work)

    async def session_availability(self, session_id: str) -> SessionAvailability:
        """Live availability of every seat area of a public show's session."""
        now = self.clock()

        async def work(conn: AsyncConnection) -> SessionAvailability:
            session = await repo.get_session(conn, session_id)
            show = None if session is None else await repo.get_show(conn, session.show_id)
            if session is None or show is None or not show.public:
                raise NotFoundError("session", session_id)
            venue = await _must(repo.get_venue(conn, show.venue_id), "venue", show.venue_id)
            areas = await repo.areas_of_sessions(conn, [session_id])
            return SessionAvailability(
                session_id=session_id,
                show_id=show.show_id,
                date=domain.display_time(session.starts_at, venue.timezone),
                starts_at=session.starts_at,
                on_sale=_on_sale(show, session, now),
                available=sum(a.stock.available for a in areas),
                seat_areas=[_area_view(a) for a in areas],
            )

        return await self._read(work)

    # -- inventory (Booking's internal API) ---------------------------------------------

    async def check_availability(self, session_id: str, area_id: str) -> Availability:
        """CheckAvailability: one area's live stock, sale state and price."""
        now = self.clock()

        async def work(conn: AsyncConnection) -> repo.AreaContext:
            found = await repo.area_context(conn, session_id, area_id)
            if found is None:
                raise NotFoundError("seat area", f"{session_id}/{area_id}")
            return found

        ctx = await self._read(work)
        stock = ctx.area.stock
        log.info(
            "CheckAvailability session=%s available=%d area=%s",
            session_id,
            stock.available,
            area_id,
        )
        return Availability(
            session_id=session_id,
            area_id=area_id,
            show_id=ctx.show.show_id,
            show_title=ctx.show.title,
            venue=ctx.venue.name,
            area_name=ctx.area.name,
            session_starts_at=ctx.session.starts_at,
            session_ends_at=ctx.session.ends_at,
            on_sale=_on_sale(ctx.show, ctx.session, now),
            price=ctx.area.price,
            currency=ctx.area.currency,
            capacity=stock.capacity,
            reserved=stock.reserved,
            sold=stock.sold,
            available=stock.available,
            per_user_limit=ctx.session.per_user_limit,
            timezone=ctx.venue.timezone,
        )

    async def reserve(
        self,
        *,
        reservation_id: str,
        session_id: str,
        area_id: str,
        quantity: int,
        expires_at: datetime,
    ) -> tuple[ReservationOut, bool]:
        """ReserveSeats: hold ``quantity`` seats until ``expires_at``; True when new.

        Idempotent by ``reservation_id``: the same request again returns the same hold (no
        second hold), the same ID for other seats is a ReservationConflictError, and a hold
        already released is a ReservationReleasedError. The reservation row and the
        compare-and-swap on the area's counters commit together or not at all.
        """
        if quantity <= 0:
            raise InvalidInputError("quantity", "must be at least 1")
        expires_at = domain.as_utc(expires_at)

        async def work(conn: AsyncConnection) -> tuple[ReservationOut, bool]:
            now = self.clock()
            ctx = await repo.area_context(conn, session_id, area_id)
            if ctx is None:
                if await repo.get_reservation(conn, reservation_id) is not None:
                    raise ReservationConflictError(reservation_id)
                raise NotFoundError("seat area", f"{session_id}/{area_id}")
            hold = _new_hold(reservation_id, session_id, area_id, quantity, expires_at, ctx.area)
            if not await repo.insert_reservation(conn, hold, now):
                return await self._replay(conn, reservation_id, session_id, area_id, quantity)
            # Checked after the insert so that a replay is answered even once sales closed.
            if not _on_sale(ctx.show, ctx.session, now):
                raise NotOnSaleError(session_id)
            domain.check_hold_expiry(expires_at, now)
            left = await repo.hold_seats(conn, area_id, quantity, now)
            if left is None:
                # Raising rolls the reservation row back with everything else.
                raise InsufficientInventoryError(quantity, await repo.available(conn, area_id))
            return _reservation_out(hold, left), True

        return await self._write(work)

    async def reserve_many(
        self, requests: Sequence[HoldRequest]
    ) -> list[tuple[ReservationOut, bool] | CatalogError]:
        """ReserveSeats for many holds in one transaction, answered one by one in order.

        For each area, the area's row is locked once and its seats handed out in request
        order while they last; the holds are inserted together and the area's ``reserved``
        raised once. Each answer is what ``reserve`` would have said to that request alone:
        (hold, True) when new, (hold, False) for a replay, or the error. Many buyers of one
        hot area thus cost one lock, one commit and a handful of statements, instead of one
        transaction each queueing on the area's row.
        """
        for request in requests:
            if request.quantity <= 0:
                raise InvalidInputError("quantity", "must be at least 1")
        if len({r.reservation_id for r in requests}) != len(requests):
            raise InvalidInputError("reservations", "reservation IDs must be distinct")
        by_area: dict[tuple[str, str], list[int]] = {}
        for index, request in enumerate(requests):
            by_area.setdefault((request.session_id, request.area_id), []).append(index)

        async def work(conn: AsyncConnection) -> list[tuple[ReservationOut, bool] | CatalogError]:
            now = self.clock()
            answers: list[tuple[ReservationOut, bool] | CatalogError | None] = [None] * len(
                requests
            )
            existing = await repo.reservations_by_id(conn, [r.reservation_id for r in requests])
            # Areas in a fixed order, so that two batches never wait for each other's locks.
            for (session_id, area_id), indices in sorted(by_area.items()):
                ctx = await repo.area_context(conn, session_id, area_id, lock=True)
                left = 0 if ctx is None else ctx.area.stock.available
                granted: list[Reservation] = []
                for index in indices:
                    request = requests[index]
                    try:
                        if request.reservation_id in existing:
                            answers[index] = await self._replay(
                                conn,
                                request.reservation_id,
                                session_id,
                                area_id,
                                request.quantity,
                            )
                            continue
                        if ctx is None:
                            raise NotFoundError("seat area", f"{session_id}/{area_id}")
                        if not _on_sale(ctx.show, ctx.session, now):
                            raise NotOnSaleError(session_id)
                        expires_at = domain.as_utc(request.expires_at)
                        domain.check_hold_expiry(expires_at, now)
                        if request.quantity > left:
                            raise InsufficientInventoryError(request.quantity, left)
                    except CatalogError as exc:
                        answers[index] = exc
                        continue
                    left -= request.quantity
                    hold = _new_hold(
                        request.reservation_id,
                        session_id,
                        area_id,
                        request.quantity,
                        expires_at,
                        ctx.area,
                    )
                    granted.append(hold)
                    answers[index] = (_reservation_out(hold, left), True)
                if granted:
                    await repo.insert_new_reservations(conn, granted, now)
                    total = sum(hold.quantity for hold in granted)
                    if await repo.hold_seats(conn, area_id, total, now) is None:
                        # The row is locked and its seats were counted above: cannot happen.
                        raise RuntimeError(f"seat area {area_id}: books changed under a lock")
            assert all(answer is not None for answer in answers)
            return [answer for answer in answers if answer is not None]

        return await self._write(work, retry_on_integrity=True)

    async def _replay(
        self,
        conn: AsyncConnection,
        reservation_id: str,
        session_id: str,
        area_id: str,
        quantity: int,
    ) -> tuple[ReservationOut, bool]:
        existing = await _must(
            repo.get_reservation(conn, reservation_id), "reservation", reservation_id
        )
        if not existing.same_request(session_id, area_id, quantity):
            raise ReservationConflictError(reservation_id)
        if existing.status == "released":
            raise ReservationReleasedError(reservation_id, existing.release_reason)
        return _reservation_out(existing, await repo.available(conn, area_id)), False

    async def confirm(self, reservation_id: str) -> ReservationOut:
        """ConfirmReservation: the held seats become sold. Idempotent."""
        return await self._transition(reservation_id, domain.confirm)

    async def release(self, reservation_id: str) -> ReservationOut:
        """ReleaseReservation: held seats (cancel) or sold seats (refund) return to stock, once."""
        return await self._transition(reservation_id, domain.release)

    async def _transition(
        self,
        reservation_id: str,
        decide: Callable[[Reservation], tuple[Reservation, Move]],
    ) -> ReservationOut:
        async def work(conn: AsyncConnection) -> ReservationOut:
            now = self.clock()
            # Statuses only move forward (held → confirmed → released), so a status that
            # changed under us settles within three reads.
            for _ in range(3):
                current = await repo.get_reservation(conn, reservation_id)
                if current is None:
                    raise NotFoundError("reservation", reservation_id)
                after, move = decide(current)
                if move is Move.NOTHING:
                    return _reservation_out(current, await repo.available(conn, current.area_id))
                if await repo.change_status(conn, current, after, now):
                    await repo.move_stock(conn, current.area_id, move, current.quantity, now)
                    return _reservation_out(after, await repo.available(conn, current.area_id))
            raise RuntimeError(f"reservation {reservation_id} kept changing")

        return await self._write(work)

    async def release_expired(self, *, batch: int = SWEEP_BATCH) -> int:
        """Return every hold past its expiry to stock; the number returned.

        Safe with any number of catalog instances sweeping at once: each hold is returned by
        exactly one of them (row locks skipped on PostgreSQL, a conditional status change on
        both engines), and a hold confirmed meanwhile is left alone.
        """
        total = 0
        while True:
            now = self.clock()

            async def work(conn: AsyncConnection, now: datetime = now) -> tuple[int, int]:
                holds = await repo.expired_holds(conn, now, batch)
                returned = 0
                for hold in holds:
                    after, move = domain.release(hold, "expired")
                    if await repo.change_status(conn, hold, after, now):
                        await repo.move_stock(conn, hold.area_id, move, hold.quantity, now)
                        returned += 1
                return len(holds), returned

            seen, returned = await self._write(work)
            total += returned
            if seen < batch:
                if total:
                    log.info("Returned %d expired hold(s) to stock", total)
                return total


async def sweep_forever(service: CatalogService, interval: float, stop: asyncio.Event) -> None:
    """Run ``release_expired`` every ``interval`` seconds until ``stop`` is set. A failed
    sweep is logged and retried on the next tick; it never stops the loop."""
    while not stop.is_set():
        try:
            await service.release_expired()
        except Exception:
            log.exception("Sweeping expired holds failed; retrying in %ss", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


# -- mapping to responses -------------------------------------------------------------------


async def _must(found: Awaitable[T | None], kind: str, identifier: str) -> T:
    value = await found
    if value is None:
        raise NotFoundError(kind, identifier)
    return value


def _new_hold(
    reservation_id: str,
    session_id: str,
    area_id: str,
    quantity: int,
    expires_at: datetime,
    area: SeatArea,
) -> Reservation:
    """A hold on ``area`` at its current price."""
    return Reservation(
        ReservationId(reservation_id),
        SessionId(session_id),
        AreaId(area_id),
        quantity,
        "held",
        expires_at,
        area.price,
        area.currency,
    )


def _on_sale(show: Show, session: Session, now: datetime) -> bool:
    return domain.sale_open(
        show.status, session.starts_at, session.sale_starts_at, session.sale_ends_at, now
    )


def _venue_out(venue: Venue) -> VenueOut:
    return VenueOut(
        venue_id=venue.venue_id,
        name=venue.name,
        city=venue.city,
        address=venue.address,
        timezone=venue.timezone,
        created_at=venue.created_at,
        updated_at=venue.updated_at,
    )


def _summary(row: repo.ShowRow) -> ShowSummary:
    tz = row.venue.timezone
    first = row.first_starts_at
    return ShowSummary(
        show_id=row.show.show_id,
        title=row.show.title,
        venue=row.venue.name,
        date=None if first is None else domain.local_date(first, tz),
        city=row.venue.city,
        category=row.show.category,
        status=row.show.status,
        venue_id=row.venue.venue_id,
        first_session_at=first,
        last_session_at=row.last_starts_at,
    )


def _admin_show(row: repo.ShowRow) -> AdminShow:
    return AdminShow(
        **_summary(row).model_dump(),
        description=row.show.description,
        created_at=row.show.created_at,
        updated_at=row.show.updated_at,
    )


def _admin_session(session: Session, show: Show, venue: Venue, now: datetime) -> AdminSession:
    return AdminSession(
        session_id=session.session_id,
        show_id=session.show_id,
        date=domain.display_time(session.starts_at, venue.timezone),
        starts_at=session.starts_at,
        ends_at=session.ends_at,
        sale_starts_at=session.sale_starts_at,
        sale_ends_at=session.sale_ends_at,
        per_user_limit=session.per_user_limit,
        on_sale=_on_sale(show, session, now),
        created_at=session.created_at,
        updated_at=session.updated_at,
    )


def _area_view(area: SeatArea) -> SeatAreaView:
    return SeatAreaView(
        area_id=area.area_id,
        name=area.name,
        price=area.price,
        currency=area.currency,
        available=area.stock.available,
    )


def _admin_area(area: SeatArea) -> AdminSeatArea:
    stock = area.stock
    return AdminSeatArea(
        area_id=area.area_id,
        session_id=area.session_id,
        name=area.name,
        price=area.price,
        currency=area.currency,
        capacity=stock.capacity,
        reserved=stock.reserved,
        sold=stock.sold,
        available=stock.available,
        version=area.version,
        created_at=area.created_at,
        updated_at=area.updated_at,
    )


def _reservation_out(res: Reservation, available: int) -> ReservationOut:
    return ReservationOut(
        reservation_id=res.reservation_id,
        session_id=res.session_id,
        area_id=res.area_id,
        quantity=res.quantity,
        status=res.status,
        expires_at=res.expires_at,
        unit_price=res.unit_price,
        currency=res.currency,
        available=available,
    )
