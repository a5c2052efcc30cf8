"""The identity service's tables; no other service reads them."""

from sqlalchemy import CheckConstraint, Column, DateTime, ForeignKey, Index, String, Table

from marquee.platform.db import new_metadata

metadata = new_metadata()

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    # Stored normalised (see domain.normalise_email), so the unique constraint is the
    # case-insensitive uniqueness rule and concurrent registrations cannot both win.
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("full_name", String(100), nullable=False),
    Column("phone", String(16), nullable=True),
    Column("role", String(16), nullable=False),
    Column("locale", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("role IN ('customer', 'admin')", name="role"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("jti", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("family_id", String(32), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_refresh_tokens_family_id", "family_id"),
    Index("ix_refresh_tokens_user_id", "user_id"),
)
