"""Booking's request and response bodies, in the seed's field names, and their exact JSON.

Money travels as a JSON number with exactly its digits (``2560``, ``99.5``), never through a
float; times are UTC ISO 8601 ending in ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from starlette.responses import Response

from marquee.booking.domain import Order, RefundRequest, StatusChanged, Ticket
from marquee.booking.payments import PaymentMethod
from marquee.platform.contract import NUMBER_ONLY, Money

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")
]
MAX_QUANTITY = 100


def money_text(amount: Decimal) -> str:
    """The JSON number text of an amount: ``2560``, ``99.5``, ``0.05``."""
    if amount == amount.to_integral_value():
        return str(int(amount))
    return format(amount.normalize(), "f")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(money_text(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def render(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The model as a JSON response with exact money and ``Z`` times."""
    body = orjson.dumps(
        model.model_dump(mode="python"), default=_json_default, option=orjson.OPT_UTC_Z
    )
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


# -- requests -------------------------------------------------------------------------------


class PlaceOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: Identifier
    seat_area_id: Identifier
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY), NUMBER_ONLY]


class PayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_method: PaymentMethod
    payment_token: str = Field(min_length=1, max_length=512)


class RefundRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class ApproveRefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_used_tickets: StrictBool = Field(
        default=False,
        description="Refund even though a ticket of the order was already used at the gate "
        "(its seat goes back on sale).",
    )


class RejectRefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


class CheckInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: str = Field(min_length=1, max_length=4096)


# -- responses ------------------------------------------------------------------------------


class OrderItemOut(BaseModel):
    session_id: str
    seat_area_id: str
    area_name: str
    quantity: int
    unit_price: Money


class OrderOut(BaseModel):
    """An order; the first four fields are the seed's create-order answer."""

    order_id: str
    total_amount: Money
    status: str
    expires_at: datetime
    currency: str
    created_at: datetime
    session_id: str
    seat_area_id: str
    quantity: int
    show_id: str
    show_title: str
    venue: str
    session_starts_at: datetime
    items: list[OrderItemOut]
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    refunded_at: datetime | None = None
    completed_at: datetime | None = None
    payment_method: str | None = None

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            order_id=order.id,
            total_amount=order.total_amount,
            status=order.status.value,
            expires_at=order.expires_at,
            currency=order.currency,
            created_at=order.created_at,
            session_id=order.session_id,
            seat_area_id=order.area_id,
            quantity=order.quantity,
            show_id=order.show_id,
            show_title=order.show_title,
            venue=order.venue,
            session_starts_at=order.session_starts_at,
            items=[
                OrderItemOut(
                    session_id=order.session_id,
                    seat_area_id=order.area_id,
                    area_name=order.area_name,
                    quantity=order.quantity,
                    unit_price=order.unit_price,
                )
            ],
            paid_at=order.paid_at,
            cancelled_at=order.cancelled_at,
            cancel_reason=order.cancel_reason,
            refunded_at=order.refunded_at,
            completed_at=order.completed_at,
            payment_method=order.payment_method,
        )


class TicketOut(BaseModel):
    """A ticket; ``ticket_id`` and ``qr_code`` are the seed's fields."""

    ticket_id: str
    qr_code: str  # the PNG's absolute URL (MARQUEE_PUBLIC_URL), openable without signing in
    qr_payload: str  # what the QR code encodes, signed with Ed25519
    seat_number: int
    status: str
    checked_in_at: datetime | None = None

    @classmethod
    def of(cls, ticket: Ticket, qr_url: str) -> TicketOut:
        return cls(
            ticket_id=ticket.id,
            qr_code=qr_url,
            qr_payload=ticket.payload,
            seat_number=ticket.seat_number,
            status=ticket.status.value,
            checked_in_at=ticket.checked_in_at,
        )


class TransitionOut(BaseModel):
    from_status: str | None
    to_status: str
    at: datetime
    cause: str

    @classmethod
    def of(cls, change: StatusChanged) -> TransitionOut:
        return cls(
            from_status=None if change.from_status is None else change.from_status.value,
            to_status=change.to_status.value,
            at=change.at,
            cause=change.cause.value,
        )


class RefundRequestOut(BaseModel):
    refund_request_id: str
    order_id: str
    user_id: str
    status: str
    reason: str | None
    amount: Money
    currency: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    completed_at: datetime | None

    @classmethod
    def of(cls, request: RefundRequest) -> RefundRequestOut:
        return cls(
            refund_request_id=request.id,
            order_id=request.order_id,
            user_id=request.user_id,
            status=request.status.value,
            reason=request.reason,
            amount=request.amount,
            currency=request.currency,
            created_at=request.created_at,
            decided_at=request.decided_at,
            decided_by=request.decided_by,
            note=request.note,
            completed_at=request.completed_at,
        )


class OrderDetailsOut(OrderOut):
    tickets: list[TicketOut]
    history: list[TransitionOut]
    refund_requests: list[RefundRequestOut]


class OrderPageOut(BaseModel):
    orders: list[OrderOut]
    page: int
    page_size: int
    total: int


class PaidOrderOut(BaseModel):
    """The seed's pay answer (``order_id``, ``status``, ``tickets``) and a little more."""

    order_id: str
    status: str
    tickets: list[TicketOut]
    total_amount: Money
    currency: str
    paid_at: datetime | None
    payment_method: str | None


class RefundRequestPageOut(BaseModel):
    refund_requests: list[RefundRequestOut]
    page: int
    page_size: int
    total: int


class RefundDecisionOut(RefundRequestOut):
    order_status: str
    refund_completed: bool


class CheckInOut(BaseModel):
    result: Literal["valid", "already_used", "forged", "refunded"]
    ticket_id: str | None = None
    order_id: str | None = None
    session_id: str | None = None
    seat_area_id: str | None = None
    seat_number: int | None = None
    checked_in_at: datetime | None = None


class SigningKeyOut(BaseModel):
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key_pem: str
    public_key: str  # base64 of the 32 raw bytes
    payload_format: str = "MQT1.<base64url claims JSON>.<base64url Ed25519 signature>"
