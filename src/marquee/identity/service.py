"""Identity's use cases: register, sign in, rotate and revoke refresh tokens, profiles."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.identity import repository as repo
from marquee.identity.domain import (
    DEFAULT_LOCALE,
    Email,
    EmailTakenError,
    FamilyId,
    InvalidCredentialsError,
    InvalidEmailError,
    LoginThrottle,
    RefreshRecord,
    RefreshTokenExpiredError,
    RefreshTokenInvalidError,
    RefreshVerdict,
    Role,
    TooManyAttemptsError,
    User,
    UserId,
    UserNotFoundError,
    check_password,
    judge_refresh,
    new_family_id,
    new_user_id,
    normalise_email,
    normalise_full_name,
    normalise_locale,
    normalise_phone,
    refusal,
)
from marquee.identity.passwords import Passwords
from marquee.platform.auth import TokenError, TokenService
from marquee.platform.cache import Cache

log = logging.getLogger("marquee.identity")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A command: open an account. Fields are as the person typed them."""

    email: str
    password: str
    full_name: str
    phone: str | None = None
    role: Role = "customer"
    locale: str = DEFAULT_LOCALE  # the language to write to the person in


class Unset(enum.Enum):
    """Marks a field a partial update leaves alone (None can be a value, e.g. no phone)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class ProfileChanges:
    """A command: change some of the caller's own profile fields."""

    full_name: str | Unset = UNSET
    phone: str | Unset | None = UNSET
    locale: str | Unset = UNSET


@dataclass(frozen=True, slots=True)
class TokenPair:
    user_id: UserId
    access_token: str
    refresh_token: str
    expires_in: int


class AdminBootstrap(enum.Enum):
    CREATED = "created"
    PROMOTED = "promoted"
    UNCHANGED = "unchanged"


async def new_account(
    engine: AsyncEngine, passwords: Passwords, cmd: NewAccount, *, now: datetime
) -> User:
    """Validate and hash a new account, not yet stored; raises the domain's validation errors
    and EmailTakenError (the unique constraint still decides races when it is stored)."""
    email = normalise_email(cmd.email)
    check_password(cmd.password, email=email)
    full_name = normalise_full_name(cmd.full_name)
    phone = normalise_phone(cmd.phone)
    async with engine.connect() as conn:
        # Answer a taken email before spending a hash on it.
        if await repo.email_exists(conn, email):
            raise EmailTakenError(f"{email} is already registered.")
    return User(
        id=new_user_id(),
        email=email,
        password_hash=await passwords.hash(cmd.password),
        full_name=full_name,
        phone=phone,
        role=cmd.role,
        locale=normalise_locale(cmd.locale),
        created_at=now,
        updated_at=now,
    )


async def create_account(
    engine: AsyncEngine, passwords: Passwords, cmd: NewAccount, *, now: datetime
) -> User:
    """Validate, hash and store a new account (the admin bootstrap and ``marquee admin``)."""
    user = await new_account(engine, passwords, cmd, now=now)
    async with engine.begin() as conn:
        await repo.add_user(conn, user)
    return user


class IdentityService:
    """The identity use cases over one service database, the shared cache and the token
    signer. Stateless itself: any number of instances can serve the same accounts."""

    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache,
        tokens: TokenService,
        passwords: Passwords,
        *,
        throttle: LoginThrottle | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.tokens = tokens
        self.passwords = passwords
        self.throttle = throttle or LoginThrottle()
        self.clock = clock

    # -- accounts and sign-in ---------------------------------------------------------

    async def register(self, cmd: NewAccount) -> TokenPair:
        """Open a customer account and sign it in (a new refresh-token family)."""
        now = self.clock()
        user = await new_account(
            self.engine, self.passwords, dataclasses.replace(cmd, role="customer"), now=now
        )
        # The account and its first refresh token are stored together or not at all.
        async with self.engine.begin() as conn:
            await repo.add_user(conn, user)
            pair = await self._issue(conn, user, new_family_id(), now)
        log.info("Registered user=%s", user.id)
        return pair

    async def login(self, email: str, password: str) -> TokenPair:
        """Sign in; raises InvalidCredentialsError for an unknown email or a wrong password
        alike (same error, one argon2 verification either way) and TooManyAttemptsError once
        the account's sign-in budget is spent, before the password is even looked at."""
        account = _login_email(email)
        key = _email_key(account)
        decision = await self.cache.rate_limit(
            key, rate=self.throttle.rate, burst=self.throttle.failures
        )
        if not decision.allowed:
            log.warning("Sign-in throttled account=%s", key.rsplit(":", 1)[1])
            raise TooManyAttemptsError(max(1.0, math.ceil(decision.retry_after)))
        async with self.engine.connect() as conn:
            user = await repo.user_by_email(conn, account)
        matched = await self.passwords.verify(
            None if user is None else user.password_hash, password
        )
        if user is None or not matched:
            raise InvalidCredentialsError("The email or password is incorrect.")
        # A success forgives earlier failures (the bucket is shared by all instances).
        await self.cache.delete(key)
        if self.passwords.needs_rehash(user.password_hash):
            await self._rehash(user, password)
        now = self.clock()
        async with self.engine.begin() as conn:
            return await self._issue(conn, user, new_family_id(), now)

    async def _rehash(self, user: User, password: str) -> None:
        new_hash = await self.passwords.hash(password)
        async with self.engine.begin() as conn:
            await repo.set_password_hash(conn, user.id, user.password_hash, new_hash)

    # -- refresh tokens -----------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: mark the presented token used and issue the next pair in its family.

        A token presented a second time revokes its whole family (both the thief's and the
        owner's sessions end) and raises RefreshTokenReusedError; of two concurrent rotations
        of one token exactly one succeeds and the other counts as reuse. The revocation is
        committed before the error is raised.
        """
        claims = self._decode_refresh(refresh_token)
        now = self.clock()
        async with self.engine.begin() as conn:
            record = await repo.refresh_by_jti(conn, str(claims["jti"]))
            if record is None or not _belongs(record, claims):
                raise RefreshTokenInvalidError("This refresh token is not valid; sign in again.")
            verdict = judge_refresh(record, now)
            if verdict is RefreshVerdict.ROTATE and not await repo.mark_used(conn, record.jti, now):
                verdict = RefreshVerdict.REUSED
            if verdict is RefreshVerdict.ROTATE:
                user = await repo.user_by_id(conn, record.user_id)
                if user is None:
                    raise RefreshTokenInvalidError("This account no longer exists.")
                return await self._issue(conn, user, record.family_id, now)
            if verdict is RefreshVerdict.REUSED:
                revoked = await repo.revoke_family(conn, record.family_id, now)
                log.warning(
                    "Refresh token reused user=%s family=%s revoked=%d",
                    record.user_id,
                    record.family_id,
                    revoked,
                )
        raise refusal(verdict)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the token's whole family. Idempotent: an already revoked, unknown or
        expired (but genuine) token is a no-op, since none of them can be used anyway."""
        try:
            claims = self._decode_refresh(refresh_token)
        except RefreshTokenExpiredError:
            return
        now = self.clock()
        async with self.engine.begin() as conn:
            record = await repo.refresh_by_jti(conn, str(claims["jti"]))
            if record is None or not _belongs(record, claims):
                return
            await repo.revoke_family(conn, record.family_id, now)
        log.info("Signed out user=%s family=%s", record.user_id, record.family_id)

    def _decode_refresh(self, token: str) -> dict[str, object]:
        try:
            claims = self.tokens.decode(token, kind="refresh")
        except TokenError as exc:
            if "expired" in str(exc):
                raise RefreshTokenExpiredError(
                    "This refresh token has expired; sign in again."
                ) from None
            raise RefreshTokenInvalidError(
                "This refresh token is not valid; sign in again."
            ) from None
        if not isinstance(claims.get("fam"), str):
            raise RefreshTokenInvalidError("This refresh token is not valid; sign in again.")
        return claims

    async def _issue(
        self, conn: AsyncConnection, user: User, family: FamilyId, now: datetime
    ) -> TokenPair:
        """A new access token and a refresh token recorded in ``family`` (caller commits)."""
        issued = int(now.timestamp())
        ttl = self.tokens.refresh_ttl
        record = RefreshRecord(
            jti=uuid.uuid4().hex,
            user_id=user.id,
            family_id=family,
            issued_at=datetime.fromtimestamp(issued, UTC),
            expires_at=datetime.fromtimestamp(issued + ttl, UTC),
            used_at=None,
            revoked_at=None,
        )
        # The token carries the record's own jti (claims override the generated one) and the
        # same issue time and lifetime, so the row and the signature agree on when it expires.
        refresh = self.tokens.issue(
            subject=user.id,
            kind="refresh",
            claims={"fam": family, "jti": record.jti},
            now=issued,
            ttl=ttl,
        )
        await repo.add_refresh(conn, record)
        return TokenPair(
            user_id=user.id,
            access_token=self.tokens.issue_access(user.id, user.role, user.email),
            refresh_token=refresh,
            expires_in=self.tokens.access_ttl,
        )

    # -- profiles -----------------------------------------------------------------------

    async def profile(self, user_id: str) -> User:
        async with self.engine.connect() as conn:
            user = await repo.user_by_id(conn, user_id)
        if user is None:
            raise UserNotFoundError(f"There is no user {user_id}.")
        return user

    async def update_profile(self, user_id: str, changes: ProfileChanges) -> User:
        """Apply the given changes (all validated before any is stored)."""
        values: dict[str, object] = {}
        if not isinstance(changes.full_name, Unset):
            values["full_name"] = normalise_full_name(changes.full_name)
        if not isinstance(changes.phone, Unset):
            values["phone"] = normalise_phone(changes.phone)
        if not isinstance(changes.locale, Unset):
            values["locale"] = normalise_locale(changes.locale)
        if not values:
            return await self.profile(user_id)
        async with self.engine.begin() as conn:
            user = await repo.update_user(conn, UserId(user_id), self.clock(), **values)
        if user is None:
            raise UserNotFoundError(f"There is no user {user_id}.")
        return user

    async def list_users(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        """One page of users, newest first, and how many there are in all."""
        async with self.engine.connect() as conn:
            return (
                await repo.page_of_users(conn, limit=limit, offset=offset),
                await repo.count_users(conn),
            )

    # -- admin bootstrap ----------------------------------------------------------------

    async def ensure_admin(self, email: str, password: str) -> AdminBootstrap:
        """Make sure ``email`` is an admin account.

        Missing: it is created with ``password`` (which must meet the policy). Present: it is
        given the admin role if it lacked it, and its password is left alone. The configured
        password only ever sets the first password; changing it later must not silently reset
        an account someone may have secured since. Safe when several instances start at once:
        the unique email decides who creates it and the others promote (a no-op).
        """
        now = self.clock()
        async with self.engine.connect() as conn:
            existing = await repo.user_by_email(conn, normalise_email(email))
        if existing is None:
            try:
                await create_account(
                    self.engine,
                    self.passwords,
                    NewAccount(
                        email=email, password=password, full_name="Administrator", role="admin"
                    ),
                    now=now,
                )
                return AdminBootstrap.CREATED
            except EmailTakenError:
                pass  # another instance created it meanwhile: make sure of the role below
        async with self.engine.begin() as conn:
            user = await repo.user_by_email(conn, normalise_email(email))
            if user is None:
                raise UserNotFoundError(f"{email} vanished while it was being made an admin.")
            promoted = await repo.set_role(conn, user.id, "admin", now)
        return AdminBootstrap.PROMOTED if promoted else AdminBootstrap.UNCHANGED


def _belongs(record: RefreshRecord, claims: dict[str, object]) -> bool:
    return record.user_id == claims.get("sub") and record.family_id == claims.get("fam")


def _login_email(raw: str) -> Email:
    """The account a sign-in names. A malformed address is not an error of its own: it is
    just an email no account has, answered like any unknown one."""
    try:
        return normalise_email(raw)
    except InvalidEmailError:
        return Email(raw.strip().lower())


def _email_key(email: str) -> str:
    # Hashed: keeps addresses out of the shared cache and bounds the key's length.
    return "identity:login:" + hashlib.sha256(email.encode()).hexdigest()[:32]
