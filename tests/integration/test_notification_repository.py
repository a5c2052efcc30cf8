"""Delivery records on SQLite and PostgreSQL: one row per (event, channel), claims that never
overlap, and workers in several processes that send each message once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.booking.events import ORDER_CREATED, OrderCreated
from marquee.identity.app import create_app as identity_app
from marquee.identity.client import IdentityClient
from marquee.notification import repository as repo
from marquee.notification.app import MIGRATIONS
from marquee.notification.config import NotificationConfig
from marquee.notification.domain import Channel, DeliveryStatus, Kind
from marquee.notification.models import deliveries, notification_events
from marquee.notification.rendering import Renderer
from marquee.notification.service import DeliveryWorker, Notifier
from marquee.notification.sms import LogSms
from marquee.platform.broker import Event
from marquee.platform.broker.memory import MemoryBroker
from marquee.platform.cache.memory import MemoryCache
from marquee.platform.db import create_engine
from marquee.platform.kernel import Kernel
from marquee.platform.migrations import upgrade
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, ServiceClient
from tests import servers

NOW = datetime(2026, 1, 14, 15, 30, tzinfo=UTC)


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.02)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the session's PostgreSQL database (synchronous, so only the
    PostgreSQL variant asks for the server)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def schema() -> str:
    return servers.unique("notification_")


@pytest.fixture
async def engine(database_url: str, schema: str) -> AsyncIterator[AsyncEngine]:
    """The service's tables, migrated, in a schema of their own (dropped afterwards)."""
    engine = create_engine(database_url, schema=schema, pool_size=8)
    try:
        await upgrade(engine, MIGRATIONS, schema=schema)
        yield engine
    finally:
        if database_url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


def order_event(n: int, user_id: str = "user-1") -> Event:
    payload = OrderCreated(
        order_id=f"order-{n}",
        user_id=user_id,
        show_id="show-1",
        show_title="周杰伦 2026 世界巡回演唱会",
        venue="上海体育场",
        session_id="session-1",
        session_starts_at=NOW + timedelta(days=200),
        area_id="vip-a",
        area_name="VIP A区",
        quantity=1,
        unit_price=Decimal("1280"),
        total_amount=Decimal("1280"),
        currency="CNY",
        expires_at=NOW + timedelta(minutes=15),
    )
    return Event(type=ORDER_CREATED, data=payload.model_dump(mode="json"), request_id=f"req-{n}")


async def record(
    engine: AsyncEngine, event: Event, *, now: datetime = NOW, channel: Channel = Channel.EMAIL
) -> int | None:
    async with engine.begin() as conn:
        await repo.add_event(conn, event, now=now)
        return await repo.add_delivery(
            conn,
            event_id=event.id,
            channel=channel,
            kind=Kind.ORDER_CONFIRMATION,
            subject="订单确认",
            user_id=str(event.data["user_id"]),
            order_id=str(event.data["order_id"]),
            now=now,
        )


async def count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_migrating_again_changes_nothing(engine: AsyncEngine, schema: str) -> None:
    await record(engine, order_event(1))
    await upgrade(engine, MIGRATIONS, schema=schema)
    assert await count(engine, deliveries) == 1


async def test_concurrent_copies_of_one_event_record_one_delivery(engine: AsyncEngine) -> None:
    event = order_event(1)

    results = await asyncio.gather(*(record(engine, event) for _ in range(12)))

    assert len([r for r in results if r is not None]) == 1
    assert await count(engine, notification_events) == 1
    assert await count(engine, deliveries) == 1


async def test_an_event_can_have_one_email_and_one_sms(engine: AsyncEngine) -> None:
    event = order_event(1)
    assert await record(engine, event, channel=Channel.EMAIL) is not None
    assert await record(engine, event, channel=Channel.SMS) is not None
    assert await record(engine, event, channel=Channel.SMS) is None
    assert await count(engine, deliveries) == 2


async def test_concurrent_workers_never_claim_the_same_delivery(engine: AsyncEngine) -> None:
    for n in range(40):
        await record(engine, order_event(n))
    claimed: list[int] = []

    async def worker() -> None:
        while batch := await repo.claim_due(
            engine, now=NOW, lease_until=NOW + timedelta(minutes=2), limit=3
        ):
            claimed.extend(item.delivery.id for item in batch)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(6)))

    assert len(claimed) == 40
    assert len(set(claimed)) == 40


async def test_a_claim_counts_an_attempt_and_carries_the_event_to_render(
    engine: AsyncEngine,
) -> None:
    event = order_event(7)
    await record(engine, event)

    [item] = await repo.claim_due(engine, now=NOW, lease_until=NOW + timedelta(minutes=2), limit=5)

    assert item.delivery.attempts == 1
    assert item.delivery.status is DeliveryStatus.PENDING
    assert item.event_type == ORDER_CREATED
    assert item.request_id == "req-7"
    assert item.payload["show_title"] == "周杰伦 2026 世界巡回演唱会"
    assert item.delivery.next_attempt_at == NOW + timedelta(minutes=2)


async def test_a_delivery_not_yet_due_is_not_claimed(engine: AsyncEngine) -> None:
    await record(engine, order_event(1), now=NOW + timedelta(seconds=30))
    assert await repo.claim_due(engine, now=NOW, lease_until=NOW, limit=5) == []


async def test_a_lapsed_claim_passes_to_another_worker_and_the_first_cannot_record(
    engine: AsyncEngine,
) -> None:
    await record(engine, order_event(1))
    lease = NOW + timedelta(seconds=60)
    [first] = await repo.claim_due(engine, now=NOW, lease_until=lease, limit=1)
    assert (
        await repo.claim_due(engine, now=NOW + timedelta(seconds=59), lease_until=lease, limit=1)
        == []
    )

    [second] = await repo.claim_due(
        engine, now=lease, lease_until=lease + timedelta(seconds=60), limit=1
    )

    assert second.delivery.id == first.delivery.id
    assert second.delivery.attempts == 2
    assert not await repo.mark_sent(
        engine, first.delivery.id, first.token, now=lease, recipient="a@example.com"
    )
    assert await repo.mark_sent(
        engine, second.delivery.id, second.token, now=lease, recipient="a@example.com"
    )
    sent = await repo.get_delivery(engine, first.delivery.id)
    assert sent is not None
    assert sent.status is DeliveryStatus.SENT
    assert sent.sent_at == lease
    assert (
        await repo.claim_due(engine, now=lease + timedelta(days=1), lease_until=lease, limit=1)
        == []
    )


async def test_only_failed_deliveries_are_reset_for_a_retry(engine: AsyncEngine) -> None:
    for n in range(3):
        await record(engine, order_event(n))
    items = await repo.claim_due(engine, now=NOW, lease_until=NOW, limit=3)
    failed, pending, sent = items
    await repo.mark_unsent(
        engine,
        failed.delivery.id,
        failed.token,
        status=DeliveryStatus.FAILED,
        next_attempt_at=NOW,
        error="SMTP down",
        recipient=None,
    )
    await repo.mark_unsent(
        engine,
        pending.delivery.id,
        pending.token,
        status=DeliveryStatus.PENDING,
        next_attempt_at=NOW + timedelta(hours=1),
        error="SMTP down",
        recipient=None,
    )
    await repo.mark_sent(engine, sent.delivery.id, sent.token, now=NOW, recipient="x@example.com")
    listed, total = await repo.list_deliveries(
        engine, status=DeliveryStatus.FAILED, offset=0, limit=10
    )
    assert total == 1
    assert [d.id for d in listed] == [failed.delivery.id]
    assert listed[0].last_error == "SMTP down"

    assert await repo.reset_failed(engine, None, now=NOW) == [failed.delivery.id]

    again = await repo.get_delivery(engine, failed.delivery.id)
    assert again is not None
    assert (again.status, again.attempts, again.next_attempt_at) == (
        DeliveryStatus.PENDING,
        0,
        NOW,
    )
    assert await repo.reset_failed(engine, [sent.delivery.id, pending.delivery.id], now=NOW) == []


async def test_a_users_deliveries_are_listed_newest_first_a_page_at_a_time(
    engine: AsyncEngine,
) -> None:
    for n in range(5):
        await record(engine, order_event(n, "alice"), now=NOW + timedelta(minutes=n))
    await record(engine, order_event(99, "bob"))

    first, total = await repo.list_for_user(engine, "alice", offset=0, limit=2)
    rest, _ = await repo.list_for_user(engine, "alice", offset=2, limit=10)

    assert total == 5
    assert [d.order_id for d in first + rest] == [f"order-{n}" for n in (4, 3, 2, 1, 0)]
    assert all(d.created_at.tzinfo is not None for d in first)


# --- several delivery workers on one database ----------------------------------------------------


class RecordingMailer:
    """Counts what it is handed, slowly enough for workers to overlap."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    async def send(self, message: EmailMessage) -> None:
        await asyncio.sleep(0.005)
        self.sent[str(message["Message-ID"])] += 1

    def describe(self) -> str:
        return "recording mailer"


async def test_delivery_workers_in_several_processes_send_each_message_once(
    database_url: str, schema: str, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    kernel = Kernel(settings=settings, cache=MemoryCache(), broker=MemoryBroker())
    identity = identity_app(
        kernel, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    async with LifespanManager(identity):
        registered = await ServiceClient(AsgiTransport(identity)).call(
            "POST",
            "/api/v1/auth/register",
            json={"email": "alice@example.com", "password": "SecurePass123", "full_name": "Alice"},
        )
        events = [order_event(n, registered["user_id"]) for n in range(30)]
        mailer = RecordingMailer()
        config = NotificationConfig(data_dir=tmp_path, batch_size=4, poll_interval_seconds=0.02)
        workers: list[DeliveryWorker] = []
        engines = [create_engine(database_url, schema=schema, pool_size=4) for _ in range(3)]
        try:
            for own_engine in engines:
                notifier = Notifier(
                    own_engine,
                    renderer=Renderer(mail_from=config.mail_from, public_url=config.public_url),
                    identity=IdentityClient(AsgiTransport(identity)),
                    mailer=mailer,
                    sms=LogSms(),
                    config=config,
                )
                workers.append(DeliveryWorker(notifier, poll_interval=0.02))
            for worker in workers:
                worker.start()
            for n, event in enumerate(events):
                assert await workers[n % 3].notifier.record(event)
                assert not await workers[(n + 1) % 3].notifier.record(event)

            async def all_sent() -> bool:
                _, total = await repo.list_deliveries(
                    engine, status=DeliveryStatus.SENT, offset=0, limit=1
                )
                return total == len(events)

            await eventually(all_sent)
        finally:
            for worker in workers:
                await worker.stop()
            for own_engine in engines:
                await own_engine.dispose()
    assert sorted(mailer.sent) == sorted(f"<{e.id}.email@marquee.local>" for e in events)
    assert set(mailer.sent.values()) == {1}
    assert sum(worker.notifier.sent for worker in workers) == len(events)
