"""Venues, shows, sessions, seat areas with their inventory, and reservations.

Revision ID: catalog_0001
Revises:
Create Date: 2026-01-14 00:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "catalog_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "venues",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("city", sa.String(64), nullable=False),
        sa.Column("address", sa.String(500), nullable=False, server_default=""),
        sa.Column("timezone", sa.String(64), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_venues")),
        sa.UniqueConstraint("name", "city", name=op.f("uq_venues_name_city")),
    )
    op.create_index("ix_venues_city", "venues", ["city"])

    op.create_table(
        "shows",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("venue_id", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('draft', 'on_sale', 'off_sale')", name=op.f("ck_shows_status")
        ),
        sa.ForeignKeyConstraint(["venue_id"], ["venues.id"], name=op.f("fk_shows_venue_id_venues")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shows")),
    )
    op.create_index("ix_shows_status_category", "shows", ["status", "category"])
    op.create_index("ix_shows_venue_id", "shows", ["venue_id"])

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("show_id", sa.String(64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sale_starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sale_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("per_user_limit", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.String(10), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("per_user_limit >= 1", name=op.f("ck_sessions_per_user_limit")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_sessions_times")),
        sa.ForeignKeyConstraint(["show_id"], ["shows.id"], name=op.f("fk_sessions_show_id_shows")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index("ix_sessions_show_id_starts_at", "sessions", ["show_id", "starts_at"])
    op.create_index("ix_sessions_local_date", "sessions", ["local_date"])

    op.create_table(
        "seat_areas",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sold", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        *_timestamps(),
        # The last line of defence against overselling, whatever the caller does.
        sa.CheckConstraint(
            "reserved >= 0 AND sold >= 0 AND reserved + sold <= capacity",
            name=op.f("ck_seat_areas_inventory"),
        ),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_seat_areas_price")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_seat_areas_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seat_areas")),
    )
    op.create_index("ix_seat_areas_session_id", "seat_areas", ["session_id"])

    op.create_table(
        "reservations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("area_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("release_reason", sa.String(16), nullable=True),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservations_quantity")),
        sa.CheckConstraint(
            "status IN ('held', 'confirmed', 'released')", name=op.f("ck_reservations_status")
        ),
        sa.ForeignKeyConstraint(
            ["area_id"], ["seat_areas.id"], name=op.f("fk_reservations_area_id_seat_areas")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    op.create_index("ix_reservations_status_expires_at", "reservations", ["status", "expires_at"])
    op.create_index("ix_reservations_area_id", "reservations", ["area_id"])


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("seat_areas")
    op.drop_table("sessions")
    op.drop_table("shows")
    op.drop_table("venues")
