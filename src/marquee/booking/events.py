"""The events Booking publishes: subjects and payloads (the contract consumers rely on).

Every event travels in the platform envelope (id, type, occurred_at, request_id, data); ``data``
is one of the payload models below, dumped with ``model_dump(mode="json")``. Money is a decimal
string; times are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

ORDER_CREATED = "orders.created"
ORDER_PAID = "orders.paid"
ORDER_CANCELLED = "orders.cancelled"
ORDER_REFUNDED = "orders.refunded"
ORDER_COMPLETED = "orders.completed"
ORDER_SUBJECTS = (ORDER_CREATED, ORDER_PAID, ORDER_CANCELLED, ORDER_REFUNDED, ORDER_COMPLETED)


class OrderSummary(BaseModel):
    """What every order event carries, so a consumer can write to the buyer without asking."""

    order_id: str
    user_id: str
    show_id: str
    show_title: str
    venue: str
    session_id: str
    session_starts_at: datetime
    area_id: str
    area_name: str
    quantity: int
    unit_price: Decimal
    total_amount: Decimal
    currency: str


class OrderCreated(OrderSummary):
    expires_at: datetime


class TicketIssued(BaseModel):
    ticket_id: str
    qr_payload: str  # the signed payload a scanner verifies offline
    qr_url: str  # the PNG, under /api/v1/tickets/{ticket_id}/qr.png, with a signed link


class OrderPaid(OrderSummary):
    paid_at: datetime
    payment_method: str
    tickets: list[TicketIssued]


class OrderCancelled(OrderSummary):
    cancelled_at: datetime
    reason: Literal["timeout", "user"]


class OrderRefunded(OrderSummary):
    refunded_at: datetime
    refund_amount: Decimal


class OrderCompleted(OrderSummary):
    completed_at: datetime
