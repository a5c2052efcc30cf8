"""The notification service's tables; no other service reads them.

``notification_events`` keeps each order event received (once, by event id) so the delivery
worker can render its messages later; ``deliveries`` holds one row per (event, channel): the
unique key is what turns an at-least-once broker into exactly one message per event.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from marquee.platform.db import new_metadata

metadata = new_metadata()

notification_events = Table(
    "notification_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    # SQLite only autoincrements an INTEGER PRIMARY KEY, so BIGINT becomes INTEGER there.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "event_id",
        String(64),
        ForeignKey("notification_events.event_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("channel", String(10), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    # When the worker may next try; while a worker holds the delivery, when its claim lapses.
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claim_token", String(32), nullable=True),
    Column("recipient", String(320), nullable=True),
    Column("subject", String(500), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("event_id", "channel", name="uq_deliveries_event_id_channel"),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
    CheckConstraint("channel IN ('email', 'sms')", name="channel"),
    CheckConstraint("attempts >= 0", name="attempts"),
)

_pending = deliveries.c.status == "pending"
# The worker only ever looks for due pending rows; a partial index keeps that lookup small
# however many sent rows accumulate.
Index(
    "ix_deliveries_due",
    deliveries.c.next_attempt_at,
    postgresql_where=_pending,
    sqlite_where=_pending,
)
Index("ix_deliveries_user", deliveries.c.user_id, deliveries.c.created_at)
Index("ix_deliveries_status", deliveries.c.status, deliveries.c.created_at)
