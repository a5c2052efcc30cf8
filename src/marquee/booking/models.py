"""The booking service's tables; no other service reads them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from marquee.platform.broker.outbox import outbox_table
from marquee.platform.db import UtcDateTime, new_metadata

metadata = new_metadata()


class Money(TypeDecorator[Decimal]):
    """Exact decimal amounts kept as text: neither database rounds them through a float."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


ORDER_STATUSES = ("created", "pending_payment", "paid", "cancelled", "refunded", "completed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("area_id", String(64), nullable=False),
    Column("show_id", String(64), nullable=False),
    Column("show_title", String(300), nullable=False),
    Column("venue", String(300), nullable=False),
    Column("area_name", String(200), nullable=False),
    Column("session_starts_at", UtcDateTime(), nullable=False),
    Column("session_ends_at", UtcDateTime(), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Money(), nullable=False),
    Column("total_amount", Money(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("paid_at", UtcDateTime(), nullable=True),
    Column("cancelled_at", UtcDateTime(), nullable=True),
    Column("cancel_reason", String(20), nullable=True),
    Column("refunded_at", UtcDateTime(), nullable=True),
    Column("completed_at", UtcDateTime(), nullable=True),
    Column("payment_method", String(20), nullable=True),
    Column("payment_reference", String(200), nullable=True),
    # Set once the seats are back in Catalog's stock (cancel, expiry, refund); until then a
    # sweeper keeps retrying the release.
    Column("inventory_released_at", UtcDateTime(), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_hash", String(64), nullable=True),
    CheckConstraint(_one_of("status", ORDER_STATUSES), name="status"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    # NULL keys never collide (on both databases), so only keyed requests are deduplicated.
    UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_idempotency_key"),
)
Index("ix_orders_user_created", orders.c.user_id, orders.c.created_at)
Index("ix_orders_status_expires", orders.c.status, orders.c.expires_at)
Index("ix_orders_status_session_ends", orders.c.status, orders.c.session_ends_at)
Index("ix_orders_user_session", orders.c.user_id, orders.c.session_id)

order_transitions = Table(
    "order_transitions",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False, index=True),
    Column("from_status", String(20), nullable=True),
    Column("to_status", String(20), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("cause", String(40), nullable=False),
)

PAYMENT_STATUSES = ("started", "approved", "declined", "unknown", "refunded", "void")

payments = Table(
    "payments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    # The provider's idempotency key: the order id, so no retry can charge twice.
    Column("charge_key", String(100), nullable=False),
    # The client's Idempotency-Key header for this pay request, if it sent one.
    Column("idempotency_key", String(200), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("method", String(20), nullable=False),
    Column("amount", Money(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reference", String(200), nullable=True),
    Column("refund_reference", String(200), nullable=True),
    Column("failure", String(300), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    CheckConstraint(_one_of("status", PAYMENT_STATUSES), name="status"),
)
Index("ix_payments_status_updated", payments.c.status, payments.c.updated_at)

tickets = Table(
    "tickets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("area_id", String(64), nullable=False),
    Column("seat_number", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("payload", Text, nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("checked_in_at", UtcDateTime(), nullable=True),
    Column("checked_in_by", String(64), nullable=True),
    Column("voided_at", UtcDateTime(), nullable=True),
    CheckConstraint(_one_of("status", ("valid", "void")), name="status"),
    UniqueConstraint("order_id", "seat_number", name="uq_tickets_order_seat"),
)

refund_requests = Table(
    "refund_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(500), nullable=True),
    Column("amount", Money(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("note", String(500), nullable=True),
    Column("completed_at", UtcDateTime(), nullable=True),
    Column("refund_reference", String(200), nullable=True),
    CheckConstraint(_one_of("status", ("pending", "approved", "rejected")), name="status"),
)
_open_request = refund_requests.c.status.in_(("pending", "approved"))
# At most one open (pending or approved) request per order; a rejected one may be followed
# by a new request.
Index(
    "uq_refund_requests_open_order",
    refund_requests.c.order_id,
    unique=True,
    postgresql_where=_open_request,
    sqlite_where=_open_request,
)
Index("ix_refund_requests_status_created", refund_requests.c.status, refund_requests.c.created_at)

# Seats each buyer holds or owns per session (pending + paid orders): the per-user limit is a
# conditional upsert on this row, exact under any concurrency on both databases.
user_quotas = Table(
    "user_quotas",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity >= 0", name="quantity_not_negative"),
)

outbox = outbox_table(metadata)
