"""Order events in, emails out: a real SMTP server (aiosmtpd) receives what the service sends.

Identity and Notification run in-process on one kernel, on the in-memory broker and on NATS
JetStream alike. Users are registered through Identity's own API, so the profile Notification
reads is the real one. Whatever the broker does (duplicates, redeliveries, a consumer dying
before it acknowledges) and whatever the mail server does (going down for a while), every
event gives exactly one email.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import nats
import pytest
import segno
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.booking.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_REFUNDED,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
    TicketIssued,
)
from marquee.identity.app import create_app as identity_app
from marquee.notification import service
from marquee.notification.app import create_app as notification_app
from marquee.notification.config import NotificationConfig
from marquee.notification.models import deliveries
from marquee.platform.broker import Broker, Event, Handler
from marquee.platform.broker.memory import MemoryBroker
from marquee.platform.cache.memory import MemoryCache
from marquee.platform.context import request_id_var
from marquee.platform.kernel import Kernel
from marquee.platform.logging import RequestIdFilter, SeedFormatter
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, Response, ServiceClient
from marquee_nats import NatsBroker
from tests import servers

PASSWORD = "SecurePass123"
SESSION = datetime(2026, 8, 15, 11, 30, tzinfo=UTC)  # 19:30 in Shanghai
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0
) -> None:
    """Wait until ``condition()`` holds, polling every 20 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.02)


# --- a real SMTP server --------------------------------------------------------------------------


class Inbox:
    """What the SMTP server received, parsed as a mail client would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self._messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    def for_event(self, event: Event) -> list[EmailMessage]:
        return [m for m in self.messages if m["X-Marquee-Event-ID"] == event.id]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    """aiosmtpd on a free localhost port, in this process; can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=0&timeout=5"

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# --- brokers that misbehave on purpose -----------------------------------------------------------


@dataclass
class Meddling:
    """A broker that passes everything through but can interfere with each handler call.

    ``fail_after_first``: the first handling of each event raises after the handler returned
    (its effects committed, the acknowledgement lost). ``hang``: ``before`` or ``after`` the
    handler, the call never returns, as in a consumer that died without acknowledging.
    """

    inner: Broker
    fail_after_first: bool = False
    hang: str | None = None
    seen: Counter[str] = field(default_factory=Counter)

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, event: Event) -> None:
        await self.inner.publish(event)

    async def subscribe(
        self, subject: str, durable: str, handler: Handler, *, max_deliver: int = 10
    ) -> None:
        async def meddled(event: Event) -> None:
            self.seen[event.id] += 1
            if self.hang == "before":
                await asyncio.Event().wait()
            await handler(event)
            if self.hang == "after":
                await asyncio.Event().wait()
            if self.fail_after_first and self.seen[event.id] == 1:
                raise RuntimeError("acknowledgement lost (on purpose)")

        await self.inner.subscribe(subject, durable, meddled, max_deliver=max_deliver)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class BrokerKit:
    """Opens brokers of one kind on one private prefix; deletes the NATS stream afterwards."""

    kind: str
    url: str
    prefix: str = field(default_factory=lambda: servers.unique("mqnotif"))

    def open(self) -> MemoryBroker | NatsBroker:
        if self.kind == "memory":
            return MemoryBroker(self.url, prefix=self.prefix, retry_base=0.01, retry_cap=0.05)
        return NatsBroker(
            self.url,
            prefix=self.prefix,
            ack_wait=1.0,
            retry_base=0.01,
            retry_cap=0.05,
            fetch_timeout=1.0,
        )

    async def publish_twice(self, broker: Broker, event: Event) -> None:
        """The same event stored twice. JetStream drops a second publish with the same
        ``Nats-Msg-Id`` within two minutes, so on NATS the copies go in without that header,
        as a publisher retrying after the window would."""
        if self.kind == "memory":
            await broker.publish(event)
            await broker.publish(event)
            return
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            for _ in range(2):
                await js.publish(f"{self.prefix}.{event.type}", event.to_json())
        finally:
            await nc.close()

    async def cleanup(self) -> None:
        if self.kind == "nats":
            janitor = NatsBroker(self.url, prefix=self.prefix)
            await janitor.start()
            await janitor.destroy()
            await janitor.close()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Synchronous, so only the NATS variant asks for the server and memory runs anywhere."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("nats_url")
    return url


@pytest.fixture
async def brokers(broker_url: str) -> AsyncIterator[BrokerKit]:
    kit = BrokerKit(broker_url.split("://", 1)[0], broker_url)
    yield kit
    await kit.cleanup()


@pytest.fixture
async def nats_brokers(nats_url: str) -> AsyncIterator[BrokerKit]:
    kit = BrokerKit("nats", nats_url)
    yield kit
    await kit.cleanup()


# --- the services --------------------------------------------------------------------------------


@dataclass
class User:
    user_id: str
    email: str
    full_name: str
    phone: str | None
    token: str


@dataclass
class Marquee:
    """Identity and Notification on one kernel, the way all-in-one mode runs them."""

    kernel: Kernel
    identity: FastAPI
    notification: FastAPI
    config: NotificationConfig

    @property
    def engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.notification.state.engine
        return engine

    async def register(self, email: str, full_name: str, phone: str | None = None) -> User:
        body: dict[str, Any] = {"email": email, "password": PASSWORD, "full_name": full_name}
        if phone:
            body["phone"] = phone
        answer = await ServiceClient(AsgiTransport(self.identity)).call(
            "POST", "/api/v1/auth/register", json=body
        )
        return User(answer["user_id"], email, full_name, phone, answer["access_token"])

    async def publish(self, event: Event) -> None:
        await self.kernel.broker.publish(event)

    async def get(self, path: str, token: str | None = None) -> Response:
        headers = [("authorization", f"Bearer {token}")] if token else []
        path, _, query = path.partition("?")
        return await AsgiTransport(self.notification).request(
            "GET", path, query=query, headers=headers
        )

    async def rows(self, event: Event | None = None) -> list[dict[str, Any]]:
        query = select(deliveries).order_by(deliveries.c.id)
        if event is not None:
            query = query.where(deliveries.c.event_id == event.id)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def all_sent(self, *events: Event, channels: int = 1) -> bool:
        """Every event has its ``channels`` deliveries, all sent."""
        for event in events:
            rows = await self.rows(event)
            if len(rows) != channels or any(row["status"] != "sent" for row in rows):
                return False
        return True

    async def all_failed(self, *events: Event) -> bool:
        for event in events:
            rows = await self.rows(event)
            if not rows or any(row["status"] != "failed" for row in rows):
                return False
        return True


def fast_config(settings: Settings, smtp: SmtpServer, **overrides: Any) -> NotificationConfig:
    config = NotificationConfig(
        data_dir=settings.data_dir,
        mailer_url=smtp.url,
        mail_from="Marquee 票务 <tickets@marquee.test>",
        public_url="https://tickets.example.com",
        max_attempts=1000,
        retry_base_seconds=0.05,
        retry_cap_seconds=0.2,
        poll_interval_seconds=0.05,
        lease_seconds=10.0,
    )
    return replace(config, **overrides)


def cheap_identity(kernel: Kernel) -> FastAPI:
    return identity_app(kernel, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


async def start_marquee(
    stack: AsyncExitStack,
    settings: Settings,
    broker: Broker,
    config: NotificationConfig,
    identity: FastAPI | None = None,
) -> Marquee:
    """One process's worth of services. Pass a running ``identity`` to share it (a second
    Notification instance on the same database and broker); it must outlive this one."""
    kernel = Kernel(settings=settings, cache=MemoryCache(), broker=broker)
    if identity is None:
        identity = cheap_identity(kernel)
        await stack.enter_async_context(LifespanManager(identity, startup_timeout=30))
    kernel.transports["identity"] = AsgiTransport(identity)
    notification = notification_app(kernel, config=config)
    await stack.enter_async_context(LifespanManager(notification, startup_timeout=30))
    return Marquee(kernel, identity, notification, config)


@pytest.fixture
async def marquee(
    settings: Settings, smtp: SmtpServer, brokers: BrokerKit
) -> AsyncIterator[Marquee]:
    async with AsyncExitStack() as stack:
        yield await start_marquee(stack, settings, brokers.open(), fast_config(settings, smtp))


@pytest.fixture
async def alice(marquee: Marquee) -> User:
    return await marquee.register("alice@example.com", "Alice Wang", "+86 138 1234 5678")


# --- events as Booking publishes them ------------------------------------------------------------


def summary(user: User | str, order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "user_id": user if isinstance(user, str) else user.user_id,
        "show_id": "show-5678",
        "show_title": "周杰伦 2026 世界巡回演唱会",
        "venue": "上海体育场",
        "session_id": "session-001",
        "session_starts_at": SESSION,
        "area_id": "vip-a",
        "area_name": "VIP A区",
        "quantity": 2,
        "unit_price": Decimal("1280"),
        "total_amount": Decimal("2560"),
        "currency": "CNY",
    }


def created(user: User | str, order_id: str = "order-9999", request_id: str = "abc-123") -> Event:
    payload = OrderCreated(
        **summary(user, order_id), expires_at=datetime(2026, 1, 14, 7, 45, tzinfo=UTC)
    )
    return Event(type=ORDER_CREATED, data=payload.model_dump(mode="json"), request_id=request_id)


def paid(user: User, order_id: str = "order-9999", tickets: int = 2) -> Event:
    payload = OrderPaid(
        **summary(user, order_id) | {"quantity": tickets},
        paid_at=datetime.now(UTC),
        payment_method="alipay",
        tickets=[
            TicketIssued(
                ticket_id=f"{order_id}-t{n}",
                qr_payload=f"MQ1.{order_id}-t{n}.ZmFrZS1zaWduYXR1cmU",
                qr_url=f"/api/v1/tickets/{order_id}-t{n}/qr.png?sig=s{n}",
            )
            for n in range(1, tickets + 1)
        ],
    )
    return Event(type=ORDER_PAID, data=payload.model_dump(mode="json"), request_id="req-paid")


def cancelled(user: User, reason: str, order_id: str = "order-9999") -> Event:
    payload = OrderCancelled(
        **summary(user, order_id),
        cancelled_at=datetime.now(UTC),
        reason=reason,  # type: ignore[arg-type]
    )
    return Event(type=ORDER_CANCELLED, data=payload.model_dump(mode="json"))


def refunded(user: User, order_id: str = "order-9999") -> Event:
    payload = OrderRefunded(
        **summary(user, order_id),
        refunded_at=datetime.now(UTC),
        refund_amount=Decimal("2560"),
    )
    return Event(type=ORDER_REFUNDED, data=payload.model_dump(mode="json"))


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    content: str = part.get_content()
    return content


@pytest.fixture
def seed_log() -> Iterator[list[str]]:
    """The notification service's log lines, formatted as in production (seed format)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(SeedFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("marquee.notification")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# --- what the user receives ----------------------------------------------------------------------


async def test_an_order_confirmation_arrives_by_smtp_in_chinese_with_both_parts_and_the_deadline(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    event = created(alice)
    await marquee.publish(event)

    await eventually(lambda: len(smtp.inbox.for_event(event)) == 1)
    [message] = smtp.inbox.for_event(event)
    assert message["Subject"].startswith("【Marquee】订单已创建")
    assert "周杰伦 2026 世界巡回演唱会" in message["Subject"]
    assert message["To"].addresses[0].display_name == "Alice Wang"
    assert message["To"].addresses[0].addr_spec == "alice@example.com"
    assert message["From"].addresses[0].display_name == "Marquee 票务"
    assert message["X-Request-ID"] == "abc-123"
    assert message["Message-ID"] == f"<{event.id}.email@marquee.test>"
    text, html = body(message, "plain"), body(message, "html")
    for part in (text, html):
        assert "Alice Wang" in part
        assert "2026-01-14 15:45 (UTC+08:00)" in part  # pay before this
        assert "上海体育场" in part
        assert "VIP A区" in part
        assert "¥2,560.00" in part
    assert smtp.inbox.envelopes[-1] == ("tickets@marquee.test", ["alice@example.com"])


async def test_the_sending_log_line_carries_the_request_id_of_the_original_request(
    marquee: Marquee, smtp: SmtpServer, alice: User, seed_log: list[str]
) -> None:
    event = created(alice, order_id="order-4242", request_id="abc-123")
    await marquee.publish(event)

    await eventually(lambda: len(smtp.inbox.for_event(event)) == 1)
    sending = [line for line in seed_log if "Sending order confirmation email" in line]
    assert len(sending) == 1
    assert sending[0].endswith(
        "[abc-123] Sending order confirmation email order=order-4242 to=a***@example.com"
    )
    assert request_id_var.get() is None  # the worker's context never leaks


async def test_e_tickets_arrive_with_one_qr_png_per_ticket_and_the_show_details(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    event = paid(alice, tickets=3)
    await marquee.publish(event)

    await eventually(lambda: len(smtp.inbox.for_event(event)) == 1)
    [message] = smtp.inbox.for_event(event)
    assert "电子票" in message["Subject"]
    assert message["X-Request-ID"] == "req-paid"
    pngs = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert len(pngs) == 3
    html = body(message, "html")
    for n, part in enumerate(pngs, start=1):
        data = part.get_content()
        assert data.startswith(PNG_MAGIC)
        qr = segno.make(f"MQ1.order-9999-t{n}.ZmFrZS1zaWduYXR1cmU", error="m")
        assert int.from_bytes(data[16:20], "big") == qr.symbol_size(scale=6)[0]
        assert f"cid:{part['Content-ID'].strip('<>')}" in html
        assert part.get_filename() == f"ticket-order-9999-t{n}.png"
    text = body(message, "plain")
    for part_text in (text, html):
        assert "周杰伦 2026 世界巡回演唱会" in part_text
        assert "上海体育场" in part_text
        assert "2026-08-15 19:30 (UTC+08:00)" in part_text
        assert "VIP A区" in part_text
    assert "https://tickets.example.com/api/v1/tickets/order-9999-t1/qr.png?sig=s1" in text


async def test_a_cancellation_email_says_why_and_a_refund_email_says_how_much(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    timeout, by_user, refund = (
        cancelled(alice, "timeout", "order-1"),
        cancelled(alice, "user", "order-2"),
        refunded(alice, "order-3"),
    )
    for event in (timeout, by_user, refund):
        await marquee.publish(event)

    await eventually(lambda: len(smtp.inbox.messages) >= 3)
    [timed_out] = smtp.inbox.for_event(timeout)
    [user_cancelled] = smtp.inbox.for_event(by_user)
    [refund_mail] = smtp.inbox.for_event(refund)
    assert "超时未支付" in timed_out["Subject"]
    assert "超过支付时限" in body(timed_out, "plain")
    assert "超时" not in user_cancelled["Subject"]
    assert "您已于" in body(user_cancelled, "plain")
    assert "退款已完成" in refund_mail["Subject"]
    assert "¥2,560.00" in body(refund_mail, "html")


async def test_a_user_with_a_phone_number_also_gets_one_text_message(
    marquee: Marquee, smtp: SmtpServer, alice: User, settings: Settings
) -> None:
    event = created(alice)
    await marquee.publish(event)

    await eventually(lambda: marquee.all_sent(event, channels=2))
    files = list((settings.data_dir / "sms").glob("*.txt"))
    assert [f.name for f in files] == [f"{event.id}.sms.txt"]
    content = files[0].read_text(encoding="utf-8")
    assert "To: +8613812345678" in content
    assert "order-9999" in content
    assert "完成支付" in content


async def test_a_user_without_a_phone_number_gets_email_only(
    marquee: Marquee, smtp: SmtpServer, settings: Settings
) -> None:
    bob = await marquee.register("bob@example.com", "Bob")
    event = created(bob)
    await marquee.publish(event)

    await eventually(lambda: marquee.all_sent(event, channels=1))
    assert [row["channel"] for row in await marquee.rows(event)] == ["email"]
    assert not (settings.data_dir / "sms").exists()


# --- exactly once out ----------------------------------------------------------------------------


async def test_a_duplicated_event_sends_one_email_and_one_sms(
    marquee: Marquee, smtp: SmtpServer, alice: User, brokers: BrokerKit, settings: Settings
) -> None:
    event = created(alice, order_id="order-dup")
    await brokers.publish_twice(marquee.kernel.broker, event)
    # A later event on the same subject as a barrier: both copies are handled before it.
    await marquee.publish(barrier := created(alice, order_id="order-barrier"))

    await eventually(lambda: marquee.all_sent(event, barrier, channels=2))
    assert len(smtp.inbox.for_event(event)) == 1
    assert len(list((settings.data_dir / "sms").glob(f"{event.id}*"))) == 1
    assert len(await marquee.rows(event)) == 2


async def test_an_event_whose_acknowledgement_was_lost_is_redelivered_and_still_sent_once(
    settings: Settings, smtp: SmtpServer, brokers: BrokerKit
) -> None:
    broker = Meddling(brokers.open(), fail_after_first=True)
    async with AsyncExitStack() as stack:
        marquee = await start_marquee(stack, settings, broker, fast_config(settings, smtp))
        alice = await marquee.register("alice@example.com", "Alice Wang")
        event = created(alice)
        await marquee.publish(event)

        await eventually(lambda: broker.seen[event.id] >= 2)  # delivered again
        await eventually(lambda: marquee.all_sent(event))
        assert len(smtp.inbox.for_event(event)) == 1


async def test_mail_sent_while_the_smtp_server_was_down_all_arrives_exactly_once_when_it_returns(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    smtp.stop()
    events = [created(alice, order_id=f"order-{n}") for n in range(3)] + [paid(alice, "order-0")]
    for event in events:
        await marquee.publish(event)

    async def retried_while_down() -> bool:
        rows = [row for row in await marquee.rows() if row["channel"] == "email"]
        return len(rows) == 4 and all(
            row["attempts"] >= 2 and row["status"] == "pending" and row["last_error"]
            for row in rows
        )

    await eventually(retried_while_down)
    # Events were taken off the broker meanwhile: nothing waits there to be redelivered.
    assert smtp.inbox.messages == []

    smtp.start()
    await eventually(lambda: marquee.all_sent(*events, channels=2))
    assert Counter(m["X-Marquee-Event-ID"] for m in smtp.inbox.messages) == Counter(
        {event.id: 1 for event in events}
    )
    assert all(row["last_error"] is None for row in await marquee.rows())


async def test_after_the_last_attempt_a_delivery_is_kept_as_failed_and_a_retry_sends_it(
    settings: Settings, smtp: SmtpServer, brokers: BrokerKit
) -> None:
    async with AsyncExitStack() as stack:
        config = fast_config(settings, smtp, max_attempts=2)
        marquee = await start_marquee(stack, settings, brokers.open(), config)
        bob = await marquee.register("bob@example.com", "Bob")
        smtp.stop()
        event = created(bob)
        await marquee.publish(event)

        await eventually(lambda: marquee.all_failed(event))
        [row] = await marquee.rows(event)
        assert row["attempts"] == 2
        assert "SMTP" in row["last_error"]

        smtp.start()
        await asyncio.sleep(0.3)  # several polls: a failed delivery is not retried by itself
        assert smtp.inbox.messages == []
        await service.retry_delivery(marquee.engine, row["id"], now=datetime.now(UTC))

        await eventually(lambda: marquee.all_sent(event))
        assert len(smtp.inbox.for_event(event)) == 1


async def test_a_message_for_an_unknown_user_fails_at_once_without_retrying(
    marquee: Marquee, smtp: SmtpServer
) -> None:
    event = created("no-such-user")
    await marquee.publish(event)

    await eventually(lambda: marquee.all_failed(event))
    [row] = await marquee.rows(event)
    assert row["attempts"] == 1
    assert "user_not_found" in row["last_error"]


async def test_an_event_with_a_broken_payload_is_acknowledged_and_ignored(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    broken = Event(type=ORDER_CREATED, data={"order_id": "order-x"})
    await marquee.publish(broken)
    await marquee.publish(good := created(alice))

    await eventually(lambda: marquee.all_sent(good, channels=2))
    assert await marquee.rows(broken) == []


# --- NATS: a consumer that dies before acknowledging ---------------------------------------------


@pytest.mark.nats
@pytest.mark.parametrize("dies", ["before recording", "after recording"])
async def test_with_nats_an_event_whose_consumer_died_unacknowledged_is_sent_once_by_another(
    settings: Settings, smtp: SmtpServer, nats_brokers: BrokerKit, dies: str
) -> None:
    config = fast_config(settings, smtp)
    doomed = Meddling(nats_brokers.open(), hang="before" if dies == "before recording" else "after")
    survivor = Meddling(nats_brokers.open())
    async with AsyncExitStack() as outer:
        # Identity outlives both notification instances, as its own process would.
        identity = cheap_identity(Kernel(settings, MemoryCache(), MemoryBroker()))
        await outer.enter_async_context(LifespanManager(identity, startup_timeout=30))
        first = await outer.enter_async_context(AsyncExitStack())
        marquee = await start_marquee(first, settings, doomed, config, identity=identity)
        alice = await marquee.register("alice@example.com", "Alice Wang")
        event = created(alice)
        await marquee.publish(event)
        await eventually(lambda: doomed.seen[event.id] == 1)
        other = await start_marquee(outer, settings, survivor, config, identity=identity)

        await first.aclose()  # the first instance dies holding the event, unacknowledged

        await eventually(lambda: survivor.seen[event.id] >= 1)  # JetStream redelivered it
        await eventually(lambda: other.all_sent(event))
        assert len(smtp.inbox.for_event(event)) == 1


# --- the API -------------------------------------------------------------------------------------


async def test_a_user_lists_their_own_notifications_with_status_a_page_at_a_time(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    bob = await marquee.register("bob@example.com", "Bob")
    mine = [created(alice, order_id="order-a"), paid(alice, "order-a")]
    for event in [*mine, created(bob, order_id="order-b")]:
        await marquee.publish(event)
    await eventually(lambda: marquee.all_sent(*mine, channels=2))

    answer = await marquee.get("/api/v1/notifications?page_size=3", alice.token)
    assert answer.status == 200
    page = answer.json()
    assert (page["total"], page["page"], page["page_size"]) == (4, 1, 3)
    assert len(page["notifications"]) == 3
    first = page["notifications"][0]
    assert {"notification_id", "channel", "kind", "status", "order_id", "subject"} <= set(first)
    assert {n["status"] for n in page["notifications"]} == {"sent"}
    rest = (await marquee.get("/api/v1/notifications?page=2&page_size=3", alice.token)).json()
    ids = [n["notification_id"] for n in page["notifications"] + rest["notifications"]]
    assert len(set(ids)) == 4
    assert {n["order_id"] for n in page["notifications"] + rest["notifications"]} == {"order-a"}
    assert {n["kind"] for n in page["notifications"] + rest["notifications"]} == {
        "order_confirmation",
        "e_tickets",
    }


async def test_listing_notifications_needs_a_valid_token_and_sane_paging(
    marquee: Marquee, alice: User
) -> None:
    anonymous = await marquee.get("/api/v1/notifications")
    assert anonymous.status == 401
    assert anonymous.header("www-authenticate")
    bad = await marquee.get("/api/v1/notifications?page_size=1000", alice.token)
    assert bad.status == 422
    assert bad.header("content-type") == "application/problem+json"
    assert (await marquee.get("/api/v1/notifications?page=abc", alice.token)).status == 422


async def test_an_admin_sees_failed_deliveries_and_retries_them(
    marquee: Marquee, smtp: SmtpServer, alice: User
) -> None:
    event = created("ghost-user")
    await marquee.publish(event)
    await eventually(lambda: marquee.all_failed(event))
    admin = marquee.kernel.tokens.issue_access("admin-1", "admin")
    transport = AsgiTransport(marquee.notification)
    auth = [("authorization", f"Bearer {admin}")]

    listed = await marquee.get("/api/v1/admin/notifications?status=failed", admin)
    assert listed.status == 200
    [failed] = listed.json()["notifications"]
    assert failed["user_id"] == "ghost-user"
    assert "user_not_found" in failed["last_error"]
    assert (await marquee.get("/api/v1/admin/notifications", alice.token)).status == 403

    path = f"/api/v1/admin/notifications/{failed['notification_id']}/retry"
    retried = await transport.request("POST", path, headers=auth)
    assert retried.status == 200
    assert retried.json()["status"] == "pending"
    await eventually(lambda: marquee.all_failed(event))  # still no such user
    again = await transport.request(
        "POST", "/api/v1/admin/notifications/999999/retry", headers=auth
    )
    assert again.status == 404
    assert again.json()["code"] == "notification_not_found"
