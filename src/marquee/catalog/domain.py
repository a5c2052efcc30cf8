"""Catalog's pure rules: inventory arithmetic, reservation transitions, sale windows, money.

No I/O here: time, IDs and prices come in as arguments, so every rule is testable in isolation
(and the inventory arithmetic is checked by hypothesis against any interleaving).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Literal, NewType, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

VenueId = NewType("VenueId", str)
ShowId = NewType("ShowId", str)
SessionId = NewType("SessionId", str)
AreaId = NewType("AreaId", str)
ReservationId = NewType("ReservationId", str)

ShowStatus = Literal["draft", "on_sale", "off_sale"]
SHOW_STATUSES: tuple[ShowStatus, ...] = get_args(ShowStatus)
# Drafts are an admin's work in progress; everything else can be browsed.
PUBLIC_STATUSES: tuple[ShowStatus, ...] = ("on_sale", "off_sale")

ReservationStatus = Literal["held", "confirmed", "released"]
RESERVATION_STATUSES: tuple[ReservationStatus, ...] = get_args(ReservationStatus)
ReleaseReason = Literal["cancelled", "expired", "refunded"]

DEFAULT_CURRENCY = "CNY"
DEFAULT_TIMEZONE = "Asia/Shanghai"
# Prices are kept as integer minor units (fen for CNY) in the database: exact on every engine.
MINOR_DIGITS = 2
_MINOR_PER_UNIT: int = 10**MINOR_DIGITS


class CatalogError(Exception):
    """Base of every business error the catalog raises; api.py maps each to a problem."""


class NotFoundError(CatalogError):
    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"No {kind} {identifier!r}.")
        self.kind = kind
        self.identifier = identifier


class InvalidInputError(CatalogError):
    """A value, or a combination of values, the catalog cannot accept."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DuplicateError(CatalogError):
    """Something with the same natural key already exists."""

    def __init__(self, kind: str, detail: str, existing_id: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.existing_id = existing_id


class InsufficientInventoryError(CatalogError):
    def __init__(self, requested: int, available: int) -> None:
        super().__init__(f"Only {available} seat(s) left; {requested} requested.")
        self.requested = requested
        self.available = available


class NotOnSaleError(CatalogError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session {session_id!r} is not on sale now.")
        self.session_id = session_id


class ReservationReleasedError(CatalogError):
    """The hold was already given back (cancelled, expired and swept, or refunded)."""

    def __init__(self, reservation_id: str, reason: str | None) -> None:
        super().__init__(f"Reservation {reservation_id!r} was released ({reason or 'unknown'}).")
        self.reservation_id = reservation_id
        self.reason = reason


class ReservationConflictError(CatalogError):
    """A reservation ID was reused for different seats: idempotency keys name one request."""

    def __init__(self, reservation_id: str) -> None:
        super().__init__(
            f"Reservation {reservation_id!r} already exists for a different session, area or"
            " quantity."
        )
        self.reservation_id = reservation_id


class CapacityBelowTakenError(CatalogError):
    def __init__(self, capacity: int, reserved: int, sold: int) -> None:
        super().__init__(
            f"Capacity {capacity} is below the {reserved + sold} seat(s) already taken"
            f" ({reserved} reserved, {sold} sold)."
        )
        self.capacity = capacity
        self.reserved = reserved
        self.sold = sold


# -- inventory ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stock:
    """One seat area's inventory. Always ``0 <= reserved``, ``0 <= sold`` and
    ``reserved + sold <= capacity``; every operation returns a new Stock or raises.

    ``hold`` and ``resize`` raise business errors (a buyer or admin asked for too much); the
    others raise ValueError, because asking them to break the invariant is a bug in the caller.
    """

    capacity: int
    reserved: int = 0
    sold: int = 0

    def __post_init__(self) -> None:
        if self.reserved < 0 or self.sold < 0 or self.reserved + self.sold > self.capacity:
            raise ValueError(f"impossible stock {self}")

    @property
    def available(self) -> int:
        return self.capacity - self.reserved - self.sold

    @property
    def taken(self) -> int:
        return self.reserved + self.sold

    def hold(self, quantity: int) -> Stock:
        _positive(quantity)
        if quantity > self.available:
            raise InsufficientInventoryError(quantity, self.available)
        return replace(self, reserved=self.reserved + quantity)

    def confirm(self, quantity: int) -> Stock:
        """Held seats become sold."""
        _positive(quantity)
        if quantity > self.reserved:
            raise ValueError(f"cannot sell {quantity} of {self.reserved} reserved")
        return replace(self, reserved=self.reserved - quantity, sold=self.sold + quantity)

    def release_held(self, quantity: int) -> Stock:
        _positive(quantity)
        if quantity > self.reserved:
            raise ValueError(f"cannot release {quantity} of {self.reserved} reserved")
        return replace(self, reserved=self.reserved - quantity)

    def release_sold(self, quantity: int) -> Stock:
        """A refund: sold seats go back on sale."""
        _positive(quantity)
        if quantity > self.sold:
            raise ValueError(f"cannot refund {quantity} of {self.sold} sold")
        return replace(self, sold=self.sold - quantity)

    def resize(self, capacity: int) -> Stock:
        if capacity < self.taken:
            raise CapacityBelowTakenError(capacity, self.reserved, self.sold)
        return replace(self, capacity=capacity)


def _positive(quantity: int) -> None:
    if quantity <= 0:
        raise ValueError(f"quantity must be positive, got {quantity}")


class Move(enum.Enum):
    """What a reservation transition does to its area's stock."""

    NOTHING = "nothing"
    HOLD = "hold"  # available -> reserved
    SELL = "sell"  # reserved -> sold
    RETURN_HELD = "return_held"  # reserved -> available
    RETURN_SOLD = "return_sold"  # sold -> available


def apply_move(stock: Stock, move: Move, quantity: int) -> Stock:
    match move:
        case Move.NOTHING:
            return stock
        case Move.HOLD:
            return stock.hold(quantity)
        case Move.SELL:
            return stock.confirm(quantity)
        case Move.RETURN_HELD:
            return stock.release_held(quantity)
        case Move.RETURN_SOLD:
            return stock.release_sold(quantity)


# -- catalog records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Venue:
    venue_id: VenueId
    name: str
    city: str
    address: str
    timezone: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Show:
    show_id: ShowId
    title: str
    category: str
    venue_id: VenueId
    description: str
    status: ShowStatus
    created_at: datetime
    updated_at: datetime

    @property
    def public(self) -> bool:
        return self.status in PUBLIC_STATUSES


@dataclass(frozen=True, slots=True)
class Session:
    """One performance of a show. Sale times are optional: open from creation, until the start."""

    session_id: SessionId
    show_id: ShowId
    starts_at: datetime
    ends_at: datetime
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    per_user_limit: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SeatArea:
    area_id: AreaId
    session_id: SessionId
    name: str
    price: Decimal
    currency: str
    stock: Stock
    version: int
    created_at: datetime
    updated_at: datetime


# -- reservations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold of ``quantity`` seats in one area, made by Booking under its own ID."""

    reservation_id: ReservationId
    session_id: SessionId
    area_id: AreaId
    quantity: int
    status: ReservationStatus
    expires_at: datetime
    unit_price: Decimal
    currency: str
    release_reason: ReleaseReason | None = None

    def same_request(self, session_id: str, area_id: str, quantity: int) -> bool:
        return (self.session_id, self.area_id, self.quantity) == (session_id, area_id, quantity)


def confirm(reservation: Reservation) -> tuple[Reservation, Move]:
    """Payment arrived: a hold becomes a sale. A hold past its expiry that the sweeper has not
    yet returned can still be confirmed (its seats were never given to anyone else); once
    released it cannot. Confirming twice is a no-op."""
    match reservation.status:
        case "held":
            return replace(reservation, status="confirmed"), Move.SELL
        case "confirmed":
            return reservation, Move.NOTHING
        case "released":
            raise ReservationReleasedError(reservation.reservation_id, reservation.release_reason)


def release(
    reservation: Reservation, reason: Literal["cancelled", "expired"] = "cancelled"
) -> tuple[Reservation, Move]:
    """Give the seats back: a hold (``reason`` says why) or a sale (a refund). Releasing twice
    is a no-op, so seats are returned once."""
    match reservation.status:
        case "held":
            return replace(reservation, status="released", release_reason=reason), Move.RETURN_HELD
        case "confirmed":
            return replace(
                reservation, status="released", release_reason="refunded"
            ), Move.RETURN_SOLD
        case "released":
            return reservation, Move.NOTHING


def is_expired(reservation: Reservation, now: datetime) -> bool:
    """A hold the sweeper may return: still held and past its expiry."""
    return reservation.status == "held" and reservation.expires_at <= now


# -- sessions and sales ------------------------------------------------------------------


def sale_open(
    show_status: ShowStatus,
    starts_at: datetime,
    sale_starts_at: datetime | None,
    sale_ends_at: datetime | None,
    now: datetime,
) -> bool:
    """Seats can be reserved: the show is on sale, the sale has started (immediately when no
    start is set) and has not ended (at the session's start when no end is set)."""
    if show_status != "on_sale":
        return False
    if sale_starts_at is not None and now < sale_starts_at:
        return False
    return now < (sale_ends_at if sale_ends_at is not None else starts_at)


def check_schedule(
    starts_at: datetime,
    ends_at: datetime,
    sale_starts_at: datetime | None,
    sale_ends_at: datetime | None,
) -> None:
    """Raise InvalidInputError unless the session's times make sense together."""
    if ends_at <= starts_at:
        raise InvalidInputError("ends_at", "must be after starts_at")
    if sale_starts_at is not None and sale_starts_at >= ends_at:
        raise InvalidInputError("sale_starts_at", "must be before the session ends")
    if sale_ends_at is not None:
        if sale_ends_at > ends_at:
            raise InvalidInputError("sale_ends_at", "must not be after the session ends")
        if sale_starts_at is not None and sale_ends_at <= sale_starts_at:
            raise InvalidInputError("sale_ends_at", "must be after sale_starts_at")


class ScheduleConflictError(InvalidInputError):
    """A change to some of a session's times that does not fit the times it keeps."""


def check_new_schedule(before: Session, after: Session) -> None:
    """Raise ScheduleConflictError unless a session's changed times fit together with the
    ones it keeps (a conflict with its stored state, not a malformed request)."""
    try:
        check_schedule(after.starts_at, after.ends_at, after.sale_starts_at, after.sale_ends_at)
    except InvalidInputError as exc:
        raise ScheduleConflictError(exc.field, exc.message) from None


def check_hold_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise InvalidInputError("expires_at", "must be in the future")


# -- time --------------------------------------------------------------------------------

# China has kept UTC+8 without daylight saving since 1991: a safe fallback where the operating
# system ships no time-zone database (Windows without the tzdata package).
_FIXED_ZONES: dict[str, tzinfo] = {
    "Asia/Shanghai": timezone(timedelta(hours=8), "CST"),
    "UTC": UTC,
}


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; InvalidInputError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fixed = _FIXED_ZONES.get(name)
        if fixed is None:
            raise InvalidInputError("timezone", f"unknown time zone {name!r}") from None
        return fixed


def local_date(moment: datetime, tz: str) -> date:
    return moment.astimezone(zone(tz)).date()


def display_time(moment: datetime, tz: str) -> str:
    """A session's local start as the seed shows it: ``2026-08-15 19:30``."""
    return moment.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidInputError("datetime", "must carry a time zone")
    return moment.astimezone(UTC)


# -- money -------------------------------------------------------------------------------


def to_minor(amount: Decimal) -> int:
    """An amount as integer minor units; InvalidInputError if negative, not finite, or finer
    than a minor unit (no silent rounding of prices)."""
    try:
        if not amount.is_finite() or amount < 0:
            raise InvalidInputError("price", "must be a finite amount of at least 0")
        minor = amount * _MINOR_PER_UNIT
        if minor != minor.to_integral_value():
            raise InvalidInputError("price", f"must have at most {MINOR_DIGITS} decimal places")
    except InvalidOperation:
        raise InvalidInputError("price", "is not a number") from None
    return int(minor)


def from_minor(minor: int) -> Decimal:
    """Integer minor units as an exact Decimal: ``128000`` → ``1280``, ``9950`` → ``99.5``."""
    units, rest = divmod(minor, _MINOR_PER_UNIT)
    if rest == 0:
        return Decimal(units)
    return (Decimal(minor) / _MINOR_PER_UNIT).normalize()


def money_text(amount: Decimal) -> str:
    """The JSON number text of an amount, without float: ``1280``, ``99.5``, ``0.05``."""
    if amount == amount.to_integral_value():
        return str(int(amount))
    return format(amount.normalize(), "f")


def check_currency(code: str) -> str:
    if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
        raise InvalidInputError("currency", "must be a three-letter ISO 4217 code such as CNY")
    return code
