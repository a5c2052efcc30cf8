"""Orders, refund requests and tickets as pure rules: no I/O, time and ids come in as arguments.

The order state machine is exactly the seed's (scenario 3):

- ``created`` → ``pending_payment``: the order was created (its seats are held)
- ``pending_payment`` → ``paid``: the payment succeeded
- ``pending_payment`` → ``cancelled``: the buyer cancelled, or the payment window elapsed
- ``paid`` → ``refunded``: the buyer asked for a refund and it was approved
- ``paid`` → ``completed``: seven days after the session ended

Every function that changes an order returns the new order and the ``StatusChanged`` records
the change made (from, to, at, cause); the service stores them all. An action the current
status does not allow raises ``InvalidTransition``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NewType

OrderId = NewType("OrderId", str)
UserId = NewType("UserId", str)
TicketId = NewType("TicketId", str)
RefundRequestId = NewType("RefundRequestId", str)

COMPLETION_DELAY = timedelta(days=7)


class OrderStatus(StrEnum):
    CREATED = "created"
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    COMPLETED = "completed"


class Action(StrEnum):
    """What can happen to an order; each action is exactly one edge of the state machine."""

    AWAIT_PAYMENT = "await_payment"
    PAY = "pay"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REFUND = "refund"
    COMPLETE = "complete"


class Cause(StrEnum):
    """Why a transition happened, stored with it."""

    PLACED = "placed"
    SEATS_HELD = "seats_held"
    PAYMENT_APPROVED = "payment_approved"
    CANCELLED_BY_USER = "cancelled_by_user"
    PAYMENT_WINDOW_ELAPSED = "payment_window_elapsed"
    REFUND_APPROVED = "refund_approved"
    SESSION_ENDED = "session_ended"


S = OrderStatus

# The seed's rules, as (from, action) -> to. Nothing else is allowed.
TRANSITIONS: dict[tuple[OrderStatus, Action], OrderStatus] = {
    (S.CREATED, Action.AWAIT_PAYMENT): S.PENDING_PAYMENT,
    (S.PENDING_PAYMENT, Action.PAY): S.PAID,
    (S.PENDING_PAYMENT, Action.CANCEL): S.CANCELLED,
    (S.PENDING_PAYMENT, Action.EXPIRE): S.CANCELLED,
    (S.PAID, Action.REFUND): S.REFUNDED,
    (S.PAID, Action.COMPLETE): S.COMPLETED,
}

ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    status: frozenset(to for (frm, _), to in TRANSITIONS.items() if frm == status)
    for status in OrderStatus
}

# Orders that count against a buyer's per-session limit and hold or own seats.
LIVE_STATUSES = frozenset({S.PENDING_PAYMENT, S.PAID})
TERMINAL_STATUSES = frozenset(status for status, targets in ALLOWED.items() if not targets)


def can_transition(from_status: OrderStatus, to_status: OrderStatus) -> bool:
    return to_status in ALLOWED[from_status]


# -- errors ---------------------------------------------------------------------------------


class BookingError(Exception):
    """Base of every booking error; the API maps each kind to one problem-details answer."""


class InvalidTransition(BookingError):
    """The order's current status does not allow the action."""

    def __init__(self, order_id: str, status: OrderStatus, action: Action | str) -> None:
        super().__init__(f"order {order_id} is {status.value}; it cannot {action}")
        self.order_id = order_id
        self.status = status
        self.action = str(action)


class PaymentWindowClosed(InvalidTransition):
    """The order is still pending but its payment window has elapsed: it can only expire."""

    def __init__(self, order_id: str, expires_at: datetime) -> None:
        super().__init__(order_id, S.PENDING_PAYMENT, Action.PAY)
        self.expires_at = expires_at


class NotDueYet(BookingError):
    """A timed transition (expiry, completion) was attempted before its time."""

    def __init__(self, order_id: str, due_at: datetime) -> None:
        super().__init__(f"order {order_id} is not due until {due_at.isoformat()}")
        self.order_id = order_id
        self.due_at = due_at


class InsufficientInventory(BookingError):
    def __init__(self, available: int, requested: int) -> None:
        super().__init__(f"{requested} seats requested, {available} available")
        self.available = available
        self.requested = requested


class NotOnSale(BookingError):
    """The session's seats are not on sale now."""


class QuantityOutOfRange(BookingError):
    def __init__(self, quantity: int, limit: int) -> None:
        super().__init__(f"quantity must be between 1 and {limit}, not {quantity}")
        self.quantity = quantity
        self.limit = limit


class PerUserLimitExceeded(BookingError):
    def __init__(self, limit: int, already: int, requested: int) -> None:
        super().__init__(
            f"at most {limit} tickets per buyer for this session; {already} already ordered"
        )
        self.limit = limit
        self.already = already
        self.requested = requested


class RefundWindowClosed(BookingError):
    """Refunds can only be requested before the session starts."""

    def __init__(self, order_id: str, starts_at: datetime) -> None:
        super().__init__(f"order {order_id}'s session started at {starts_at.isoformat()}")
        self.order_id = order_id
        self.starts_at = starts_at


class TicketsAlreadyUsed(BookingError):
    """A refund would void tickets already let through the gate (and put their seats back on
    sale); the organiser must say so explicitly to go ahead."""

    def __init__(self, order_id: str, ticket_ids: tuple[str, ...]) -> None:
        super().__init__(f"{len(ticket_ids)} ticket(s) of order {order_id} were already used.")
        self.order_id = order_id
        self.ticket_ids = ticket_ids


class TicketVoid(BookingError):
    """The ticket was voided (its order refunded): it no longer admits anyone."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"Ticket {ticket_id} is void.")
        self.ticket_id = ticket_id


class InvalidRefundTransition(BookingError):
    """The refund request's status does not allow the decision."""

    def __init__(self, request_id: str, status: RefundStatus, action: str) -> None:
        super().__init__(f"refund request {request_id} is {status.value}; it cannot be {action}")
        self.request_id = request_id
        self.status = status
        self.action = action


# -- orders ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """One seat area of one session as Catalog offers it at the moment of ordering."""

    session_id: str
    area_id: str
    show_id: str
    show_title: str
    venue: str
    area_name: str
    session_starts_at: datetime
    session_ends_at: datetime
    on_sale: bool
    unit_price: Decimal
    currency: str
    available: int
    per_user_limit: int


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """One stored transition: from (None for the very first), to, when and why."""

    order_id: OrderId
    from_status: OrderStatus | None
    to_status: OrderStatus
    at: datetime
    cause: Cause


@dataclass(frozen=True, slots=True)
class Order:
    id: OrderId
    user_id: UserId
    session_id: str
    area_id: str
    show_id: str
    show_title: str
    venue: str
    area_name: str
    session_starts_at: datetime
    session_ends_at: datetime
    quantity: int
    unit_price: Decimal
    total_amount: Decimal
    currency: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    refunded_at: datetime | None = None
    completed_at: datetime | None = None
    payment_method: str | None = None
    payment_reference: str | None = None

    @property
    def completion_due_at(self) -> datetime:
        return self.session_ends_at + COMPLETION_DELAY

    def is_expired(self, now: datetime) -> bool:
        """A pending order whose payment window has elapsed (whether or not swept yet)."""
        return self.status is S.PENDING_PAYMENT and now >= self.expires_at


def check_purchase(offer: Offer, quantity: int, already_ordered: int) -> None:
    """Raise unless a buyer holding ``already_ordered`` live seats may order ``quantity`` more."""
    check_terms(offer, quantity, already_ordered)
    if offer.available < quantity:
        raise InsufficientInventory(offer.available, quantity)


def check_terms(offer: Offer, quantity: int, already_ordered: int) -> None:
    """``check_purchase`` without the seats left: the terms of sale alone (on sale, quantity,
    per-buyer limit), for callers whose seats are decided elsewhere (a counter, a hold)."""
    if not offer.on_sale:
        raise NotOnSale(f"session {offer.session_id} is not on sale")
    if not 1 <= quantity <= offer.per_user_limit:
        raise QuantityOutOfRange(quantity, offer.per_user_limit)
    if already_ordered + quantity > offer.per_user_limit:
        raise PerUserLimitExceeded(offer.per_user_limit, already_ordered, quantity)


def place(
    order_id: OrderId,
    user_id: UserId,
    offer: Offer,
    quantity: int,
    *,
    now: datetime,
    expires_at: datetime,
) -> tuple[Order, list[StatusChanged]]:
    """A new order whose seats are held until ``expires_at``: created, then pending payment."""
    if quantity < 1:
        raise QuantityOutOfRange(quantity, offer.per_user_limit)
    if expires_at <= now:
        raise ValueError("an order's payment window must end after it is placed")
    created = Order(
        id=order_id,
        user_id=user_id,
        session_id=offer.session_id,
        area_id=offer.area_id,
        show_id=offer.show_id,
        show_title=offer.show_title,
        venue=offer.venue,
        area_name=offer.area_name,
        session_starts_at=offer.session_starts_at,
        session_ends_at=offer.session_ends_at,
        quantity=quantity,
        unit_price=offer.unit_price,
        total_amount=offer.unit_price * quantity,
        currency=offer.currency,
        status=S.CREATED,
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
    )
    first = StatusChanged(order_id, None, S.CREATED, now, Cause.PLACED)
    pending, changes = _move(created, Action.AWAIT_PAYMENT, now, Cause.SEATS_HELD)
    return pending, [first, *changes]


def pay(
    order: Order, now: datetime, *, method: str, reference: str
) -> tuple[Order, list[StatusChanged]]:
    """The payment succeeded: pending → paid, only within the payment window."""
    check_payable(order, now)
    paid, changes = _move(order, Action.PAY, now, Cause.PAYMENT_APPROVED)
    return replace(paid, paid_at=now, payment_method=method, payment_reference=reference), changes


def check_payable(order: Order, now: datetime) -> None:
    """Raise unless the order can be paid now (pending and within its window)."""
    _target(order, Action.PAY)
    if order.is_expired(now):
        raise PaymentWindowClosed(order.id, order.expires_at)


def cancel(order: Order, now: datetime) -> tuple[Order, list[StatusChanged]]:
    """The buyer cancels a pending order."""
    cancelled, changes = _move(order, Action.CANCEL, now, Cause.CANCELLED_BY_USER)
    return replace(cancelled, cancelled_at=now, cancel_reason="user"), changes


def expire(order: Order, now: datetime) -> tuple[Order, list[StatusChanged]]:
    """The payment window elapsed on a pending order."""
    _target(order, Action.EXPIRE)
    if now < order.expires_at:
        raise NotDueYet(order.id, order.expires_at)
    cancelled, changes = _move(order, Action.EXPIRE, now, Cause.PAYMENT_WINDOW_ELAPSED)
    return replace(cancelled, cancelled_at=now, cancel_reason="timeout"), changes


def refund(order: Order, now: datetime) -> tuple[Order, list[StatusChanged]]:
    """An approved refund request was carried out: paid → refunded."""
    refunded, changes = _move(order, Action.REFUND, now, Cause.REFUND_APPROVED)
    return replace(refunded, refunded_at=now), changes


def complete(order: Order, now: datetime) -> tuple[Order, list[StatusChanged]]:
    """Seven days after the session ended, a paid order is completed."""
    _target(order, Action.COMPLETE)
    if now < order.completion_due_at:
        raise NotDueYet(order.id, order.completion_due_at)
    completed, changes = _move(order, Action.COMPLETE, now, Cause.SESSION_ENDED)
    return replace(completed, completed_at=now), changes


def _target(order: Order, action: Action) -> OrderStatus:
    target = TRANSITIONS.get((order.status, action))
    if target is None:
        raise InvalidTransition(order.id, order.status, action)
    return target


def _move(
    order: Order, action: Action, now: datetime, cause: Cause
) -> tuple[Order, list[StatusChanged]]:
    target = _target(order, action)
    change = StatusChanged(order.id, order.status, target, now, cause)
    return replace(order, status=target, updated_at=now), [change]


# -- refund requests ------------------------------------------------------------------------


class RefundStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """A buyer's request to refund a paid order. ``completed_at`` is set once an approved
    request has been carried out (money back, tickets void, seats in stock)."""

    id: RefundRequestId
    order_id: OrderId
    user_id: UserId
    status: RefundStatus
    reason: str | None
    amount: Decimal
    currency: str
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    note: str | None = None
    completed_at: datetime | None = None
    refund_reference: str | None = None


def request_refund(
    order: Order,
    request_id: RefundRequestId,
    *,
    now: datetime,
    reason: str | None,
    session_starts_at: datetime | None = None,
) -> RefundRequest:
    """A paid order's buyer asks for a refund, before the session starts.

    ``session_starts_at`` is the session's current start when known (it may have been moved
    since the order was placed); otherwise the start recorded on the order counts.
    """
    if order.status is not S.PAID:
        raise InvalidTransition(order.id, order.status, Action.REFUND)
    starts_at = session_starts_at or order.session_starts_at
    if now >= starts_at:
        raise RefundWindowClosed(order.id, starts_at)
    return RefundRequest(
        id=request_id,
        order_id=order.id,
        user_id=order.user_id,
        status=RefundStatus.PENDING,
        reason=reason,
        amount=order.total_amount,
        currency=order.currency,
        created_at=now,
    )


def approve_refund(request: RefundRequest, *, now: datetime, admin_id: str) -> RefundRequest:
    if request.status is not RefundStatus.PENDING:
        raise InvalidRefundTransition(request.id, request.status, "approved")
    return replace(request, status=RefundStatus.APPROVED, decided_at=now, decided_by=admin_id)


def reject_refund(
    request: RefundRequest, *, now: datetime, admin_id: str, note: str | None
) -> RefundRequest:
    if request.status is not RefundStatus.PENDING:
        raise InvalidRefundTransition(request.id, request.status, "rejected")
    return replace(
        request, status=RefundStatus.REJECTED, decided_at=now, decided_by=admin_id, note=note
    )


# -- tickets --------------------------------------------------------------------------------


class TicketStatus(StrEnum):
    VALID = "valid"
    VOID = "void"  # the order was refunded


class CheckInResult(StrEnum):
    VALID = "valid"
    ALREADY_USED = "already_used"
    FORGED = "forged"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class Ticket:
    id: TicketId
    order_id: OrderId
    user_id: UserId
    session_id: str
    area_id: str
    seat_number: int  # 1..quantity within the order
    status: TicketStatus
    payload: str  # the signed QR payload
    issued_at: datetime
    checked_in_at: datetime | None = None


def check_no_ticket_used(order_id: str, tickets: Sequence[Ticket]) -> None:
    """Raise TicketsAlreadyUsed when any of an order's tickets was checked in."""
    used = tuple(ticket.id for ticket in tickets if ticket.checked_in_at is not None)
    if used:
        raise TicketsAlreadyUsed(order_id, used)


def check_in(ticket: Ticket) -> CheckInResult:
    """What the gate says about a genuine ticket (signature already verified)."""
    if ticket.status is TicketStatus.VOID:
        return CheckInResult.REFUNDED
    if ticket.checked_in_at is not None:
        return CheckInResult.ALREADY_USED
    return CheckInResult.VALID
