"""Booking's hand-written migration builds exactly the tables its models describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from marquee.booking.app import MIGRATIONS
from marquee.booking.models import metadata
from marquee.platform.db import create_engine
from marquee.platform.migrations import upgrade


async def test_the_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'booking.db'}", schema="booking")
    try:
        await upgrade(engine, MIGRATIONS, schema="booking")

        def differences(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))

        def indexes(connection: Connection) -> dict[str, set[str]]:
            inspector = inspect(connection)
            return {
                table: {ix["name"] for ix in inspector.get_indexes(table) if ix["name"]}
                for table in metadata.tables
            }

        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
            found = await conn.run_sync(indexes)
        assert "uq_refund_requests_open_order" in found["refund_requests"]
        assert "ix_outbox_unpublished" in found["outbox"]
    finally:
        await engine.dispose()
