"""What to send for which order event, and the delivery rules: retries, masking. Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from marquee.booking.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_REFUNDED,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class DeliveryStatus(StrEnum):
    """``pending`` until sent; ``failed`` after the last attempt (or a permanent error)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Kind(StrEnum):
    """The message an order event causes; also the name of its templates."""

    ORDER_CONFIRMATION = "order_confirmation"
    E_TICKETS = "e_tickets"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_REFUNDED = "order_refunded"


OrderEvent = OrderCreated | OrderPaid | OrderCancelled | OrderRefunded

KIND_BY_SUBJECT: dict[str, Kind] = {
    ORDER_CREATED: Kind.ORDER_CONFIRMATION,
    ORDER_PAID: Kind.E_TICKETS,
    ORDER_CANCELLED: Kind.ORDER_CANCELLED,
    ORDER_REFUNDED: Kind.ORDER_REFUNDED,
}
PAYLOAD_BY_SUBJECT: dict[str, type[OrderEvent]] = {
    ORDER_CREATED: OrderCreated,
    ORDER_PAID: OrderPaid,
    ORDER_CANCELLED: OrderCancelled,
    ORDER_REFUNDED: OrderRefunded,
}
# What log lines call each message: "Sending order confirmation email order=...".
KIND_LABELS: dict[Kind, str] = {
    Kind.ORDER_CONFIRMATION: "order confirmation",
    Kind.E_TICKETS: "e-tickets",
    Kind.ORDER_CANCELLED: "order cancellation",
    Kind.ORDER_REFUNDED: "refund confirmation",
}
NOTIFIED_SUBJECTS = tuple(KIND_BY_SUBJECT)


class NotificationError(Exception):
    """Base of the notification service's domain errors."""


class DeliveryNotFoundError(NotificationError):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"no notification with id {delivery_id}")
        self.delivery_id = delivery_id


class NotFailedError(NotificationError):
    """Only a failed delivery can be retried; a pending one is already being retried."""

    def __init__(self, delivery_id: int, status: str) -> None:
        super().__init__(f"notification {delivery_id} is {status}, not failed")
        self.delivery_id = delivery_id
        self.status = status


class DeliveryError(NotificationError):
    """Sending did not work. ``permanent`` errors (an address the server refuses, an unknown
    user) fail the delivery at once; the others are retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def parse_payload(subject: str, data: dict[str, Any]) -> OrderEvent:
    """The typed payload of an order event; raises ValueError for an unknown subject and
    pydantic's ValidationError (a ValueError) for a payload that breaks the contract."""
    model = PAYLOAD_BY_SUBJECT.get(subject)
    if model is None:
        raise ValueError(f"no notification for events of type {subject!r}")
    payload: BaseModel = model.model_validate(data)
    return payload  # type: ignore[return-value]


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): exponential, capped, jittered.

    ``jitter`` in [0, 1] picks a point in the upper half of the window, so deliveries that
    failed together (the mail server went down) spread out instead of retrying in lockstep,
    and no retry comes sooner than half the exponential delay.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within [0, 1]")
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 62))
    return ceiling / 2 + jitter * ceiling / 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a delivery goes after an unsuccessful attempt."""

    status: DeliveryStatus
    next_attempt_at: datetime


def after_failure(
    *,
    attempts: int,
    max_attempts: int,
    permanent: bool,
    now: datetime,
    base: float,
    cap: float,
    jitter: float,
) -> Outcome:
    """Retry later with backoff, or give up: after ``max_attempts`` or a permanent error the
    delivery is failed and kept for inspection (``marquee notifications failed``)."""
    if permanent or attempts >= max_attempts:
        return Outcome(DeliveryStatus.FAILED, now)
    delay = retry_delay(attempts, base=base, cap=cap, jitter=jitter)
    return Outcome(DeliveryStatus.PENDING, now + timedelta(seconds=delay))


def mask_email(address: str) -> str:
    """``alice@example.com`` → ``a***@example.com``: enough to recognise, not to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return mask_text(address)
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    """``+8613812345678`` → ``+86138****5678``: the last four digits stay readable."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "***"
    prefix = "+" if phone.strip().startswith("+") else ""
    return f"{prefix}{digits[:-8]}****{digits[-4:]}"


def mask_text(text: str) -> str:
    return f"{text[:1]}***" if text else "***"


def mask_recipient(channel: Channel, recipient: str | None) -> str:
    if not recipient:
        return "-"
    return mask_email(recipient) if channel is Channel.EMAIL else mask_phone(recipient)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one event on one channel, and how sending it went."""

    id: int
    event_id: str
    channel: Channel
    kind: Kind
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    recipient: str | None
    subject: str
    user_id: str
    order_id: str
    created_at: datetime
    sent_at: datetime | None
