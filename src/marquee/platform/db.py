"""Databases: one per service (a SQLite file, or a PostgreSQL schema), async SQLAlchemy 2."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on both databases.

    SQLite keeps no time zone, so values are stored as naive UTC (their text then sorts and
    compares correctly) and come back marked UTC; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_metadata() -> MetaData:
    """Each service's tables live in their own MetaData with stable constraint names."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_postgres(engine_or_url: AsyncEngine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("postgresql")


def create_engine(
    url: str,
    *,
    schema: str,
    pool_size: int = 10,
    pool_timeout: float = 30.0,
    pooler: str = "none",
) -> AsyncEngine:
    """An engine whose unqualified tables resolve to this service's own data.

    PostgreSQL: the service's schema via ``search_path`` (created by its first migration run).
    SQLite: the file named by the URL, with WAL, through one connection per process. SQLite
    lets one writer in at a time, and a writer that finds the file locked sleeps in SQLite's
    busy handler (up to 100 ms a try): under a rush, several pooled connections spend their
    time in that back-off. One connection queues the statements in the event loop instead;
    each takes microseconds, and no code holds a connection across a call to another service.
    The busy timeout stays for other processes (the CLI) writing to the same file.

    ``pooler="transaction"``: PostgreSQL is behind a pooler in transaction mode (PgBouncer),
    where consecutive transactions may run on different server connections. Nothing may
    outlive a transaction there: neither asyncpg's prepared statements (no statement caches,
    and a unique name for each one) nor a session's ``search_path`` (every table is named
    with its schema instead).
    """
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=30, connect_args={"timeout": 30}
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # A fixed pool: callers beyond ``pool_size`` wait for a connection. Overflow connections
    # would be opened under load and closed as soon as they are returned (a PostgreSQL
    # backend started and torn down per request in a rush), and a 2-core server gains
    # nothing from more concurrent statements anyway.
    if pooler == "transaction":
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_recycle=1800,
            connect_args={
                "prepared_statement_cache_size": 0,  # SQLAlchemy's, over asyncpg's own
                "statement_cache_size": 0,
                "prepared_statement_name_func": _unique_statement_name,
                "timeout": 5,
            },
        )
        return engine.execution_options(schema_translate_map={None: schema}, **{_POOLED: True})
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": {"search_path": schema}, "timeout": 5},
    )


_POOLED = "marquee_transaction_pooler"


def may_read_outside_a_transaction(conn: AsyncConnection) -> bool:
    """Whether a read may run without BEGIN and ROLLBACK (PostgreSQL in autocommit).

    Not behind a transaction-mode pooler: there a statement prepared outside a transaction
    may be executed on another server connection, which never saw it prepared.
    """
    pooled = conn.sync_engine.get_execution_options().get(_POOLED, False)
    return conn.dialect.name == "postgresql" and not pooled


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One database transaction: commit on success, roll back on any error."""
    async with engine.begin() as conn:
        yield conn


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
