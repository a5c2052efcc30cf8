"""Alembic, one migration history per service, run programmatically on an async engine."""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config


def run_env(context: EnvironmentContext, metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``: migrate the connection it was given."""
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `marquee migrate`, which supplies a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def upgrade(engine: AsyncEngine, script_location: Path, schema: str) -> None:
    """Bring one service's database to the newest revision.

    Safe when several instances start at once: on PostgreSQL an advisory lock held for the
    transaction serialises them, and the later ones find nothing left to do.
    """
    config = alembic_config(script_location)

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            key = zlib.crc32(f"marquee-migrate:{schema}".encode())
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            # For this transaction only: behind a transaction-mode pooler no session setting
            # would survive to the next one, and Alembic reflects through search_path.
            await conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        await conn.run_sync(_upgrade)


class NotMigratedError(Exception):
    """A database is behind this release's migrations; the message says what to run."""


async def require_current(engine: AsyncEngine, script_location: Path, schema: str) -> None:
    """Raise NotMigratedError unless the database is at the newest revision.

    Distributed deployments migrate in a step of their own (``marquee migrate``, a Job), so
    a service started against an older schema stops at once instead of failing on its first
    query, or migrating in the middle of a rolling update.
    """
    heads = set(ScriptDirectory.from_config(alembic_config(script_location)).get_heads())

    def _current(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        current = await conn.run_sync(_current)
    if current != heads:
        at = ", ".join(sorted(current)) or "no revision"
        raise NotMigratedError(
            f"the {schema} database is not migrated (it is at {at}, this release needs"
            f" {', '.join(sorted(heads))}): run `marquee migrate {schema}` first"
        )
