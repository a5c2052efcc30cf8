"""Identity's use cases and SQL on a real database: SQLite and PostgreSQL, one suite for both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.identity import repository as repo
from marquee.identity.app import MIGRATIONS, create_app
from marquee.identity.domain import (
    EmailTakenError,
    InvalidCredentialsError,
    InvalidPhoneError,
    RefreshTokenExpiredError,
    RefreshTokenInvalidError,
    RefreshTokenReusedError,
    RefreshTokenRevokedError,
    TooManyAttemptsError,
    UserNotFoundError,
    WeakPasswordError,
)
from marquee.identity.models import refresh_tokens, users
from marquee.identity.passwords import Passwords
from marquee.identity.service import (
    AdminBootstrap,
    IdentityService,
    NewAccount,
    ProfileChanges,
    TokenPair,
)
from marquee.platform.auth import TokenService
from marquee.platform.cache import Cache
from marquee.platform.cache.memory import MemoryCache
from marquee.platform.cache.redis import RedisCache
from marquee.platform.db import create_engine
from marquee.platform.kernel import Kernel, StartupError
from marquee.platform.migrations import upgrade
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from tests import servers

SECRET = "integration-secret-" + "s" * 32
PASSWORD = "SecurePass123"


class CountingHasher(PasswordHasher):
    """argon2id at a test-friendly cost, counting verifications (each one costs the same)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**({"time_cost": 1, "memory_cost": 1024, "parallelism": 1} | params))
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifications += 1
        return super().verify(hash, password)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the session's PostgreSQL database (synchronous, so only the
    PostgreSQL variant asks for the server and its session fixture can run its own loop)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Identity's migrated tables: a schema of this test's own on PostgreSQL, dropped after."""
    schema = servers.unique("identity_test_")
    engine = create_engine(database_url, schema=schema, pool_size=8)
    try:
        await upgrade(engine, MIGRATIONS, schema=schema)
        yield engine
    finally:
        if database_url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


def make_service(
    engine: AsyncEngine,
    clock: Clock,
    hasher: PasswordHasher,
    tokens: TokenService,
    cache: Cache | None = None,
) -> IdentityService:
    return IdentityService(engine, cache or MemoryCache(), tokens, Passwords(hasher), clock=clock)


@pytest.fixture
def identity(
    engine: AsyncEngine, clock: Clock, hasher: CountingHasher, tokens: TokenService
) -> IdentityService:
    return make_service(engine, clock, hasher, tokens)


async def register(
    identity: IdentityService, email: str = "alice@example.com", **extra: Any
) -> TokenPair:
    return await identity.register(
        NewAccount(email=email, password=PASSWORD, full_name="Alice Wang", **extra)
    )


async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


# -- registration -------------------------------------------------------------------------


async def test_registering_signs_the_new_customer_in(
    identity: IdentityService, tokens: TokenService, engine: AsyncEngine
) -> None:
    pair = await register(identity, "  Alice@Example.COM ", phone="+86 138 1234 5678")
    principal = tokens.verify_access(pair.access_token)
    assert (principal.user_id, principal.role, principal.email) == (
        pair.user_id,
        "customer",
        "alice@example.com",
    )
    claims = tokens.decode(pair.refresh_token, kind="refresh")
    async with engine.connect() as conn:
        record = await repo.refresh_by_jti(conn, claims["jti"])
        user = await repo.user_by_id(conn, pair.user_id)
    assert record is not None
    assert record.family_id == claims["fam"]
    assert record.used_at is None
    assert user is not None
    assert user.phone == "+8613812345678"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


async def test_an_email_is_registered_once_whatever_its_case(identity: IdentityService) -> None:
    await register(identity, "alice@example.com")
    with pytest.raises(EmailTakenError):
        await register(identity, "ALICE@example.com ")


async def test_of_concurrent_registrations_of_one_email_exactly_one_wins(
    identity: IdentityService, engine: AsyncEngine
) -> None:
    outcomes = await asyncio.gather(
        *(register(identity, "rush@example.com") for _ in range(5)), return_exceptions=True
    )
    won = [o for o in outcomes if isinstance(o, TokenPair)]
    lost = [o for o in outcomes if isinstance(o, EmailTakenError)]
    assert (len(won), len(lost)) == (1, 4)
    assert await count(engine, users) == 1
    assert await count(engine, refresh_tokens) == 1


async def test_a_refused_registration_stores_nothing(
    identity: IdentityService, engine: AsyncEngine
) -> None:
    with pytest.raises(WeakPasswordError):
        await identity.register(
            NewAccount(email="bob@example.com", password="password", full_name="Bob")
        )
    with pytest.raises(InvalidPhoneError):
        await register(identity, "bob@example.com", phone="12345")
    assert await count(engine, users) == 0


async def test_registration_never_makes_an_admin(identity: IdentityService) -> None:
    pair = await identity.register(
        NewAccount(email="eve@example.com", password=PASSWORD, full_name="Eve", role="admin")
    )
    assert (await identity.profile(pair.user_id)).role == "customer"


# -- signing in ---------------------------------------------------------------------------


async def test_signing_in_starts_a_new_family(
    identity: IdentityService, tokens: TokenService
) -> None:
    first = await register(identity)
    again = await identity.login("ALICE@example.com", PASSWORD)
    assert again.user_id == first.user_id
    fam = [tokens.decode(pair.refresh_token, kind="refresh")["fam"] for pair in (first, again)]
    assert fam[0] != fam[1]


async def test_a_wrong_password_and_an_unknown_email_are_the_same_error_and_cost(
    identity: IdentityService, hasher: CountingHasher
) -> None:
    await register(identity)
    errors = []
    costs = []
    for email, password in [("alice@example.com", "Wrong12345"), ("nobody@example.com", PASSWORD)]:
        before = hasher.verifications
        with pytest.raises(InvalidCredentialsError) as refused:
            await identity.login(email, password)
        costs.append(hasher.verifications - before)
        errors.append(str(refused.value))
    assert costs == [1, 1]
    assert errors[0] == errors[1]


async def test_a_malformed_email_is_just_an_unknown_account(identity: IdentityService) -> None:
    with pytest.raises(InvalidCredentialsError):
        await identity.login("not an email", PASSWORD)


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    identity: IdentityService, hasher: CountingHasher
) -> None:
    await register(identity)
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            await identity.login("alice@example.com", "Wrong12345")
    before = hasher.verifications
    with pytest.raises(TooManyAttemptsError) as throttled:
        await identity.login("Alice@example.com", PASSWORD)
    assert hasher.verifications == before  # refused before the password was looked at
    assert 1 <= throttled.value.retry_after <= 900


async def test_a_successful_sign_in_forgives_earlier_failures(identity: IdentityService) -> None:
    await register(identity)
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            await identity.login("alice@example.com", "Wrong12345")
    await identity.login("alice@example.com", PASSWORD)
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            await identity.login("alice@example.com", "Wrong12345")
    await identity.login("alice@example.com", PASSWORD)


async def test_throttling_one_account_leaves_others_alone(identity: IdentityService) -> None:
    await register(identity, "alice@example.com")
    await register(identity, "bob@example.com")
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            await identity.login("alice@example.com", "Wrong12345")
    with pytest.raises(TooManyAttemptsError):
        await identity.login("alice@example.com", PASSWORD)
    await identity.login("bob@example.com", PASSWORD)


@pytest.mark.redis
async def test_failures_count_across_instances_sharing_redis(
    engine: AsyncEngine,
    clock: Clock,
    hasher: CountingHasher,
    tokens: TokenService,
    redis_url: str,
    redis_prefix: str,
) -> None:
    caches = [RedisCache(redis_url, prefix=redis_prefix) for _ in range(2)]
    try:
        first, second = (make_service(engine, clock, hasher, tokens, cache) for cache in caches)
        await register(first)
        for instance in (first, second, first, second, first):
            with pytest.raises(InvalidCredentialsError):
                await instance.login("alice@example.com", "Wrong12345")
        with pytest.raises(TooManyAttemptsError):
            await second.login("alice@example.com", PASSWORD)
    finally:
        for cache in caches:
            await cache.close()


async def test_a_hash_made_with_older_parameters_is_upgraded_on_sign_in(
    engine: AsyncEngine, clock: Clock, tokens: TokenService
) -> None:
    old = make_service(engine, clock, CountingHasher(time_cost=1), tokens)
    pair = await register(old)
    new = make_service(engine, clock, CountingHasher(time_cost=2), tokens)
    await new.login("alice@example.com", PASSWORD)
    stored = (await new.profile(pair.user_id)).password_hash
    assert "t=2" in stored
    await new.login("alice@example.com", PASSWORD)


# -- refresh tokens -----------------------------------------------------------------------


async def test_refreshing_rotates_within_the_family(
    identity: IdentityService, tokens: TokenService, engine: AsyncEngine
) -> None:
    first = await register(identity)
    second = await identity.refresh(first.refresh_token)
    old = tokens.decode(first.refresh_token, kind="refresh")
    new = tokens.decode(second.refresh_token, kind="refresh")
    assert new["fam"] == old["fam"]
    assert new["jti"] != old["jti"]
    assert second.user_id == first.user_id
    assert tokens.verify_access(second.access_token).user_id == first.user_id
    async with engine.connect() as conn:
        used = await repo.refresh_by_jti(conn, old["jti"])
    assert used is not None
    assert used.used_at is not None
    third = await identity.refresh(second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)


async def test_reusing_a_refresh_token_revokes_its_whole_family(
    identity: IdentityService, engine: AsyncEngine
) -> None:
    first = await register(identity)
    second = await identity.refresh(first.refresh_token)
    other_session = await identity.login("alice@example.com", PASSWORD)
    with pytest.raises(RefreshTokenReusedError):
        await identity.refresh(first.refresh_token)
    # The revocation was committed, not rolled back with the error.
    with pytest.raises(RefreshTokenRevokedError):
        await identity.refresh(second.refresh_token)
    with pytest.raises(RefreshTokenRevokedError):
        await identity.refresh(first.refresh_token)
    # Another family (another device's sign-in) is untouched.
    await identity.refresh(other_session.refresh_token)


async def test_of_two_concurrent_refreshes_of_one_token_exactly_one_succeeds(
    identity: IdentityService, tokens: TokenService, engine: AsyncEngine
) -> None:
    first = await register(identity)
    outcomes = await asyncio.gather(
        identity.refresh(first.refresh_token),
        identity.refresh(first.refresh_token),
        return_exceptions=True,
    )
    assert sum(isinstance(o, TokenPair) for o in outcomes) == 1
    assert sum(isinstance(o, RefreshTokenReusedError | RefreshTokenRevokedError) for o in outcomes)
    family = tokens.decode(first.refresh_token, kind="refresh")["fam"]
    assert await count(engine, refresh_tokens, refresh_tokens.c.family_id == family) == 2
    assert (
        await count(
            engine,
            refresh_tokens,
            refresh_tokens.c.family_id == family,
            refresh_tokens.c.revoked_at.is_(None),
        )
        == 0
    )


async def test_a_refresh_token_past_its_stored_expiry_is_refused(
    identity: IdentityService, clock: Clock
) -> None:
    pair = await register(identity)
    clock.advance(days=31)
    with pytest.raises(RefreshTokenExpiredError):
        await identity.refresh(pair.refresh_token)


async def test_a_refresh_token_whose_signature_has_expired_is_refused(
    identity: IdentityService, clock: Clock
) -> None:
    clock.advance(days=-31)
    pair = await register(identity)
    clock.advance(days=31)
    with pytest.raises(RefreshTokenExpiredError):
        await identity.refresh(pair.refresh_token)


@pytest.mark.parametrize(
    "forge",
    [
        lambda pair: pair.access_token,
        lambda pair: pair.refresh_token[:-4] + "AAAA",
        lambda pair: jwt.encode(
            jwt.decode(pair.refresh_token, options={"verify_signature": False}),
            "another-secret-of-at-least-32-bytes",
            algorithm="HS256",
        ),
        lambda pair: "not.a.token",
    ],
    ids=["access-token", "tampered", "other-secret", "garbage"],
)
async def test_anything_but_a_genuine_refresh_token_is_refused(
    identity: IdentityService, forge: Any
) -> None:
    pair = await register(identity)
    with pytest.raises(RefreshTokenInvalidError):
        await identity.refresh(forge(pair))


async def test_a_genuine_token_this_service_never_recorded_is_refused(
    identity: IdentityService, tokens: TokenService
) -> None:
    pair = await register(identity)
    unknown = tokens.issue(subject=pair.user_id, kind="refresh", claims={"fam": "f" * 32})
    with pytest.raises(RefreshTokenInvalidError):
        await identity.refresh(unknown)
    without_family = tokens.issue(subject=pair.user_id, kind="refresh")
    with pytest.raises(RefreshTokenInvalidError):
        await identity.refresh(without_family)


async def test_signing_out_revokes_the_family_and_is_idempotent(
    identity: IdentityService,
) -> None:
    first = await register(identity)
    second = await identity.refresh(first.refresh_token)
    elsewhere = await identity.login("alice@example.com", PASSWORD)
    await identity.logout(second.refresh_token)
    await identity.logout(second.refresh_token)
    await identity.logout(first.refresh_token)
    with pytest.raises(RefreshTokenRevokedError):
        await identity.refresh(second.refresh_token)
    await identity.refresh(elsewhere.refresh_token)


async def test_signing_out_with_a_forged_token_is_refused(identity: IdentityService) -> None:
    pair = await register(identity)
    with pytest.raises(RefreshTokenInvalidError):
        await identity.logout(pair.access_token)


# -- profiles -----------------------------------------------------------------------------


async def test_a_profile_changes_only_in_the_fields_given(
    identity: IdentityService, clock: Clock
) -> None:
    pair = await register(identity, phone="+8613812345678")
    created = await identity.profile(pair.user_id)
    clock.advance(minutes=5)
    renamed = await identity.update_profile(
        pair.user_id, ProfileChanges(full_name="  Alice  W. ", locale="en-gb")
    )
    assert (renamed.full_name, renamed.phone, renamed.locale) == (
        "Alice W.",
        "+8613812345678",
        "en-GB",
    )
    assert renamed.created_at == created.created_at
    assert renamed.updated_at == clock.now
    cleared = await identity.update_profile(pair.user_id, ProfileChanges(phone=None))
    assert cleared.phone is None
    assert cleared.full_name == "Alice W."


async def test_an_invalid_change_changes_nothing(identity: IdentityService) -> None:
    pair = await register(identity)
    with pytest.raises(InvalidPhoneError):
        await identity.update_profile(
            pair.user_id, ProfileChanges(full_name="Mallory", phone="call me")
        )
    assert (await identity.profile(pair.user_id)).full_name == "Alice Wang"


async def test_an_unknown_user_has_no_profile(identity: IdentityService) -> None:
    with pytest.raises(UserNotFoundError):
        await identity.profile("0" * 32)
    with pytest.raises(UserNotFoundError):
        await identity.update_profile("0" * 32, ProfileChanges(full_name="Ghost"))


async def test_users_are_listed_newest_first_a_page_at_a_time(
    identity: IdentityService, clock: Clock
) -> None:
    for n in range(5):
        await register(identity, f"user{n}@example.com")
        clock.advance(seconds=1)
    page, total = await identity.list_users(limit=2, offset=1)
    assert total == 5
    assert [user.email for user in page] == ["user3@example.com", "user2@example.com"]
    everyone, _ = await identity.list_users(limit=10, offset=0)
    assert [user.email for user in everyone] == [f"user{n}@example.com" for n in range(4, -1, -1)]


# -- the admin bootstrap ------------------------------------------------------------------


async def test_the_bootstrap_creates_the_admin_once(
    identity: IdentityService, tokens: TokenService
) -> None:
    assert await identity.ensure_admin("Admin@Marquee.test", "AdminPass123") is (
        AdminBootstrap.CREATED
    )
    assert await identity.ensure_admin("admin@marquee.test", "AdminPass123") is (
        AdminBootstrap.UNCHANGED
    )
    pair = await identity.login("admin@marquee.test", "AdminPass123")
    assert tokens.verify_access(pair.access_token).role == "admin"


async def test_the_bootstrap_promotes_an_existing_account_and_keeps_its_password(
    identity: IdentityService,
) -> None:
    await register(identity, "boss@example.com")
    assert await identity.ensure_admin("boss@example.com", "Configured123") is (
        AdminBootstrap.PROMOTED
    )
    pair = await identity.login("boss@example.com", PASSWORD)
    assert (await identity.profile(pair.user_id)).role == "admin"
    with pytest.raises(InvalidCredentialsError):
        await identity.login("boss@example.com", "Configured123")


async def test_the_bootstrap_refuses_a_weak_password_for_a_new_admin(
    identity: IdentityService,
) -> None:
    with pytest.raises(WeakPasswordError):
        await identity.ensure_admin("admin@marquee.test", "admin")


async def test_concurrent_bootstraps_make_exactly_one_admin(
    identity: IdentityService, engine: AsyncEngine
) -> None:
    outcomes = await asyncio.gather(
        *(identity.ensure_admin("admin@marquee.test", "AdminPass123") for _ in range(4))
    )
    assert outcomes.count(AdminBootstrap.CREATED) == 1
    assert await count(engine, users, users.c.role == "admin") == 1


# -- the app on its own PostgreSQL database -----------------------------------------------


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database of this test's own, where the app migrates schema identity."""
    url = str(servers.run(servers.create_postgres_database()))
    yield url
    servers.run(servers.drop_postgres_database(url))


@pytest.mark.postgres
async def test_several_instances_starting_at_once_bootstrap_one_admin(
    fresh_postgres: str, settings: Settings
) -> None:
    configured = settings.model_copy(
        update={
            "identity_database_url": fresh_postgres,
            "admin_email": "admin@marquee.test",
            "admin_password": "AdminPass123",
        }
    )
    apps = [create_app(Kernel.from_settings(configured), hasher=CountingHasher()) for _ in range(3)]
    async with AsyncExitStack() as stack:
        await asyncio.gather(
            *(stack.enter_async_context(LifespanManager(app, startup_timeout=30)) for app in apps)
        )
        login = await AsgiTransport(apps[2]).request(
            "POST",
            "/api/v1/auth/login",
            headers=[("content-type", "application/json")],
            body=b'{"email": "admin@marquee.test", "password": "AdminPass123"}',
        )
        assert login.status == 200
        engine = create_engine(fresh_postgres, schema="identity", pool_size=1)
        try:
            assert await count(engine, users, users.c.role == "admin") == 1
        finally:
            await engine.dispose()


async def test_a_weak_configured_admin_password_stops_start_up_with_a_clear_error(
    settings: Settings,
) -> None:
    configured = settings.model_copy(
        update={"admin_email": "admin@marquee.test", "admin_password": "admin"}
    )
    app = create_app(Kernel.from_settings(configured), hasher=CountingHasher())
    with pytest.raises(StartupError, match=r"MARQUEE_ADMIN_PASSWORD.*at least 8 characters"):
        async with LifespanManager(app, startup_timeout=30):
            pass
