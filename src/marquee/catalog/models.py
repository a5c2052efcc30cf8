"""The catalog service's tables; no other service reads them.

Prices are integer minor units (exact on SQLite and PostgreSQL alike). Times are stored as
UTC and always read back timezone-aware. ``ck_seat_areas_inventory`` makes overselling
impossible whatever a caller does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from marquee.platform.db import UtcDateTime, new_metadata

metadata = new_metadata()

INVENTORY_CHECK = "reserved >= 0 AND sold >= 0 AND reserved + sold <= capacity"


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    ]


venues = Table(
    "venues",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("city", String(64), nullable=False),
    Column("address", String(500), nullable=False, server_default=""),
    Column("timezone", String(64), nullable=False),
    *_timestamps(),
    UniqueConstraint("name", "city", name="uq_venues_name_city"),
    Index("ix_venues_city", "city"),
)

shows = Table(
    "shows",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("category", String(32), nullable=False),
    Column("venue_id", String(64), ForeignKey("venues.id"), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    *_timestamps(),
    CheckConstraint("status IN ('draft', 'on_sale', 'off_sale')", name="status"),
    Index("ix_shows_status_category", "status", "category"),
    Index("ix_shows_venue_id", "venue_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("show_id", String(64), ForeignKey("shows.id"), nullable=False),
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("ends_at", UtcDateTime(), nullable=False),
    Column("sale_starts_at", UtcDateTime(), nullable=True),
    Column("sale_ends_at", UtcDateTime(), nullable=True),
    Column("per_user_limit", Integer, nullable=False),
    # The start's calendar date at the venue (YYYY-MM-DD), for the date filters.
    Column("local_date", String(10), nullable=False),
    *_timestamps(),
    CheckConstraint("per_user_limit >= 1", name="per_user_limit"),
    CheckConstraint("ends_at > starts_at", name="times"),
    Index("ix_sessions_show_id_starts_at", "show_id", "starts_at"),
    Index("ix_sessions_local_date", "local_date"),
)

seat_areas = Table(
    "seat_areas",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("session_id", String(64), ForeignKey("sessions.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, server_default="0"),
    Column("sold", Integer, nullable=False, server_default="0"),
    Column("version", Integer, nullable=False, server_default="0"),
    *_timestamps(),
    CheckConstraint(INVENTORY_CHECK, name="inventory"),
    CheckConstraint("price_minor >= 0", name="price"),
    Index("ix_seat_areas_session_id", "session_id"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("session_id", String(64), nullable=False),
    Column("area_id", String(64), ForeignKey("seat_areas.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("release_reason", String(16), nullable=True),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    *_timestamps(),
    CheckConstraint("quantity > 0", name="quantity"),
    CheckConstraint("status IN ('held', 'confirmed', 'released')", name="status"),
    # The sweeper's query: held reservations by expiry.
    Index("ix_reservations_status_expires_at", "status", "expires_at"),
    Index("ix_reservations_area_id", "area_id"),
)
