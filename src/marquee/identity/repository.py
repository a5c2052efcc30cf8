"""Identity's SQL: rows in, domain objects out. Callers own the transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from marquee.identity.domain import (
    Email,
    EmailTakenError,
    FamilyId,
    RefreshRecord,
    Role,
    User,
    UserId,
)
from marquee.identity.models import refresh_tokens, users


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _user(row: RowMapping) -> User:
    return User(
        id=UserId(row["id"]),
        email=Email(row["email"]),
        password_hash=row["password_hash"],
        full_name=row["full_name"],
        phone=row["phone"],
        role=row["role"],
        locale=row["locale"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
    )


def _refresh(row: RowMapping) -> RefreshRecord:
    return RefreshRecord(
        jti=row["jti"],
        user_id=UserId(row["user_id"]),
        family_id=FamilyId(row["family_id"]),
        issued_at=_utc(row["issued_at"]),
        expires_at=_utc(row["expires_at"]),
        used_at=_maybe_utc(row["used_at"]),
        revoked_at=_maybe_utc(row["revoked_at"]),
    )


# -- users --------------------------------------------------------------------------------


async def add_user(conn: AsyncConnection, user: User) -> None:
    """Insert ``user``; raises EmailTakenError when the email is already registered.

    Run it in a transaction of its own (or a savepoint): on PostgreSQL the failed insert
    aborts the surrounding transaction.
    """
    try:
        await conn.execute(
            insert(users).values(
                id=user.id,
                email=user.email,
                password_hash=user.password_hash,
                full_name=user.full_name,
                phone=user.phone,
                role=user.role,
                locale=user.locale,
                created_at=user.created_at,
                updated_at=user.updated_at,
            )
        )
    except IntegrityError as exc:
        raise EmailTakenError(f"{user.email} is already registered.") from exc


async def user_by_id(conn: AsyncConnection, user_id: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
    return None if row is None else _user(row)


async def user_by_email(conn: AsyncConnection, email: Email) -> User | None:
    row = (await conn.execute(select(users).where(users.c.email == email))).mappings().first()
    return None if row is None else _user(row)


async def email_exists(conn: AsyncConnection, email: Email) -> bool:
    found = await conn.execute(select(users.c.id).where(users.c.email == email))
    return found.first() is not None


async def update_user(
    conn: AsyncConnection, user_id: UserId, now: datetime, **values: Any
) -> User | None:
    """Set ``values`` (column names) on one user and bump ``updated_at``; None if unknown."""
    result = await conn.execute(
        update(users).where(users.c.id == user_id).values(**values, updated_at=now)
    )
    if result.rowcount == 0:
        return None
    return await user_by_id(conn, user_id)


async def set_role(conn: AsyncConnection, user_id: UserId, role: Role, now: datetime) -> bool:
    """Give the user ``role``; False when the user already had it."""
    result = await conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.role != role)
        .values(role=role, updated_at=now)
    )
    return result.rowcount > 0


async def set_password_hash(
    conn: AsyncConnection, user_id: UserId, expected: str, new_hash: str
) -> bool:
    """Replace the hash only if it is still ``expected`` (a concurrent change wins)."""
    result = await conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.password_hash == expected)
        .values(password_hash=new_hash)
    )
    return result.rowcount > 0


async def page_of_users(conn: AsyncConnection, *, limit: int, offset: int) -> list[User]:
    """Users newest first; ``id`` breaks ties so pages never overlap or skip."""
    rows = (
        await conn.execute(
            select(users)
            .order_by(users.c.created_at.desc(), users.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).mappings()
    return [_user(row) for row in rows]


async def count_users(conn: AsyncConnection) -> int:
    total = (await conn.execute(select(func.count()).select_from(users))).scalar_one()
    return int(total)


# -- refresh tokens -----------------------------------------------------------------------


async def add_refresh(conn: AsyncConnection, record: RefreshRecord) -> None:
    await conn.execute(
        insert(refresh_tokens).values(
            jti=record.jti,
            user_id=record.user_id,
            family_id=record.family_id,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            used_at=record.used_at,
            revoked_at=record.revoked_at,
        )
    )


async def refresh_by_jti(conn: AsyncConnection, jti: str) -> RefreshRecord | None:
    row = (
        (await conn.execute(select(refresh_tokens).where(refresh_tokens.c.jti == jti)))
        .mappings()
        .first()
    )
    return None if row is None else _refresh(row)


async def mark_used(conn: AsyncConnection, jti: str, now: datetime) -> bool:
    """Mark a live token used. False when it was used or revoked meanwhile: of two concurrent
    rotations of one token exactly one gets True (the row lock / SQLite's single writer)."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.jti == jti,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    return result.rowcount == 1


async def revoke_family(conn: AsyncConnection, family_id: FamilyId, now: datetime) -> int:
    """Revoke every token of the family not revoked yet; returns how many were."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)
