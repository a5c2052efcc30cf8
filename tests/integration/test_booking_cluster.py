"""Booking as it runs distributed: two booking instances (each its own kernel) on one
PostgreSQL and one Redis, with the real Identity and Catalog apps in-process.

A rush of 500 buyers for 50 seats, expiry returning every unpaid seat, payment racing expiry,
sweepers on two instances at once, counters corrected from the database, and the outbox
publishing what a dead process committed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select

from marquee.booking.app import create_app as booking_app
from marquee.booking.models import order_transitions, orders, outbox, payments, user_quotas
from marquee.booking.payments import (
    Charge,
    PaymentMethod,
    PaymentUnavailable,
    Refund,
    SandboxProvider,
)
from marquee.booking.service import Booking, availability_key
from marquee.catalog.app import create_app as catalog_app
from marquee.identity.app import create_app as identity_app
from marquee.platform.broker import Event
from marquee.platform.broker.outbox import OutboxRelay
from marquee.platform.kernel import Kernel
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, Response, UpstreamUnavailable
from tests import servers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T0 = datetime.now(UTC).replace(microsecond=0)
WINDOW = timedelta(minutes=15)


class ManualClock:
    """A clock only the test moves (shared by Catalog and the booking instances)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class HookedSandbox(SandboxProvider):
    """The sandbox provider, with a hook run after a charge is made and before it is
    answered: the moment a racing expiry can strike."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_charge: Callable[[], Awaitable[None]] | None = None
        self.unreachable_refunds = 0  # how many refund calls fail as if the provider were down

    async def charge(
        self,
        idempotency_key: str,
        amount: Decimal,
        currency: str,
        method: PaymentMethod,
        token: str,
    ) -> Charge:
        charge = await super().charge(idempotency_key, amount, currency, method, token)
        hook, self.after_charge = self.after_charge, None
        if hook is not None:
            await hook()
        return charge

    async def refund(self, reference: str, amount: Decimal) -> Refund:
        if self.unreachable_refunds > 0:
            self.unreachable_refunds -= 1
            raise PaymentUnavailable("provider down (on purpose)")
        return await super().refund(reference, amount)


@dataclass
class Node:
    """One booking instance: its kernel, app, in-process client and the events it published."""

    kernel: Kernel
    app: FastAPI
    http: AsgiTransport
    provider: HookedSandbox
    clock: ManualClock
    events: list[Event] = field(default_factory=list)

    @property
    def booking(self) -> Booking:
        booking: Booking = self.app.state.booking
        return booking

    async def call(self, method: str, path: str, token: str, body: Any = None) -> Response:
        send = [("Authorization", f"Bearer {token}")]
        payload = b""
        if body is not None:
            payload = orjson.dumps(body)
            send.append(("Content-Type", "application/json"))
        return await self.http.request(method, path, headers=send, body=payload)


@dataclass
class Deployment:
    core: Kernel
    identity: AsgiTransport
    catalog: AsgiTransport
    nodes: list[Node]
    clock: ManualClock
    admin: str

    async def catalog_call(self, method: str, path: str, body: Any = None) -> Any:
        answer = await self.catalog.request(
            method,
            path,
            headers=[
                ("Authorization", f"Bearer {self.admin}"),
                ("Content-Type", "application/json"),
            ],
            body=b"" if body is None else orjson.dumps(body),
        )
        assert answer.status < 300, answer.json()
        return answer.json()

    async def stock_area(self, capacity: int, *, per_user_limit: int = 4) -> tuple[str, str]:
        show = await self.catalog_call(
            "POST",
            "/api/v1/admin/shows",
            {"title": "Hot show", "category": "演唱会", "venue": "上海体育场", "city": "上海",
             "status": "on_sale"},
        )  # fmt: skip
        starts = self.clock.now + timedelta(days=30)
        session = await self.catalog_call(
            "POST",
            f"/api/v1/admin/shows/{show['show_id']}/sessions",
            {
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=3)).isoformat(),
                "per_user_limit": per_user_limit,
            },
        )
        area = await self.catalog_call(
            "POST",
            f"/api/v1/admin/sessions/{session['session_id']}/seat-areas",
            {"name": "VIP A区", "price": 1280, "capacity": capacity},
        )
        return session["session_id"], area["area_id"]

    async def area(self, area_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.catalog_call(
            "GET", f"/api/v1/admin/seat-areas/{area_id}"
        )
        return found

    async def buyers(self, count: int) -> list[str]:
        """Register ``count`` buyers through Identity; their access tokens."""

        async def one(n: int) -> str:
            answer = await self.identity.request(
                "POST",
                "/api/v1/auth/register",
                headers=[("Content-Type", "application/json")],
                body=orjson.dumps(
                    {
                        "email": f"buyer{n}-{servers.unique('')}@example.com",
                        "password": "SecurePass123",
                        "full_name": f"Buyer {n}",
                    }
                ),
            )
            assert answer.status == 201, answer.json()
            token: str = answer.json()["access_token"]
            return token

        tokens: list[str] = []
        for start in range(0, count, 50):
            tokens += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))
        return tokens

    def events(self, type_: str) -> list[Event]:
        return [e for node in self.nodes for e in node.events if e.type == type_]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    url = await servers.create_postgres_database()
    try:
        yield url
    finally:
        await servers.drop_postgres_database(url)


@pytest.fixture
def cluster_settings(
    settings: Settings, database: str, redis_url: str, redis_prefix: str
) -> Settings:
    return settings.model_copy(
        update={
            "database_url": database,
            "cache_url": redis_url,
            "cache_prefix": redis_prefix,
            "db_pool_size": 8,
        }
    )


@asynccontextmanager
async def deployment(
    settings: Settings,
    *,
    instances: int = 2,
    sweep_interval: float = 3600.0,
    clocks: list[ManualClock] | None = None,
    lock_wait: float = 3.0,
) -> AsyncIterator[Deployment]:
    """Identity and Catalog on one kernel, and ``instances`` booking apps on kernels of their
    own, all sharing the database and Redis named in ``settings``."""
    clock = ManualClock()
    node_clocks = clocks or [clock] * instances
    core = Kernel.from_settings(settings)
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    identity = identity_app(core, hasher=cheap)
    catalog = catalog_app(core, sweep_interval=min(sweep_interval, 0.2), clock=clock)
    async with AsyncExitStack() as stack:
        for app in (identity, catalog):
            await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        identity_http, catalog_http = AsgiTransport(identity), AsgiTransport(catalog)
        nodes = []
        for n in range(instances):
            kernel = Kernel.from_settings(settings)
            kernel.transports.update(identity=identity_http, catalog=catalog_http)
            provider = HookedSandbox(kernel.cache)
            app = booking_app(
                kernel,
                clock=node_clocks[n],
                provider=provider,
                sweep_interval=sweep_interval,
                reconcile_interval=3600,
                relay_poll_interval=0.05,
                lock_wait=lock_wait,
            )
            node = Node(kernel, app, AsgiTransport(app), provider, node_clocks[n])

            async def record(event: Event, node: Node = node) -> None:
                node.events.append(event)

            await kernel.broker.start()
            await kernel.broker.subscribe("orders.>", "test-recorder", record)
            await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
            nodes.append(node)
        yield Deployment(
            core,
            identity_http,
            catalog_http,
            nodes,
            clock,
            core.tokens.issue_access("admin-test", "admin"),
        )


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.05)


def order_body(session_id: str, area_id: str, quantity: int = 1) -> dict[str, Any]:
    return {"session_id": session_id, "seat_area_id": area_id, "quantity": quantity}


async def count(node: Node, query: Any) -> int:
    async with node.booking.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


# -- the rush -------------------------------------------------------------------------------


async def test_a_rush_on_two_instances_sells_exactly_the_capacity_and_expiry_returns_the_unpaid(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings, sweep_interval=0.1) as d:
        session_id, area_id = await d.stock_area(50)
        tokens = await d.buyers(500)
        over_capacity: list[dict[str, Any]] = []
        rushing = True

        async def watch_stock() -> None:
            while rushing:
                area = await d.area(area_id)
                if area["reserved"] + area["sold"] > area["capacity"]:
                    over_capacity.append(area)
                await asyncio.sleep(0.01)

        async def buy(n: int, token: str) -> Response:
            node = d.nodes[n % 2]
            while True:
                answer = await node.call(
                    "POST", "/api/v1/orders", token, order_body(session_id, area_id)
                )
                if answer.status != 503:  # busy: retry, as Retry-After says
                    return answer
                await asyncio.sleep(0.05)

        # One early buyer per instance: both have their counter seeded when the rush opens
        # (else whichever instance seeds first sells everything), leaving 48 seats for 500.
        early = await d.buyers(2)
        for n, token in enumerate(early):
            assert (await buy(n, token)).status == 201

        watcher = asyncio.create_task(watch_stock())
        answers = await asyncio.gather(*(buy(n, t) for n, t in enumerate(tokens)))
        rushing = False
        await watcher

        statuses = Counter(a.status for a in answers)
        assert statuses == {201: 48, 409: 452}, statuses
        assert {a.json()["code"] for a in answers if a.status == 409} == {"insufficient_inventory"}
        assert over_capacity == []
        won = [a.json() for a in answers if a.status == 201]
        assert len({o["order_id"] for o in won}) == 48
        area = await d.area(area_id)
        assert (area["reserved"], area["sold"], area["available"]) == (50, 0, 0)
        assert await count(d.nodes[0], select(func.count()).select_from(orders)) == 50
        served_by = Counter(n % 2 for n, a in enumerate(answers) if a.status == 201)
        assert set(served_by) == {0, 1}, "both instances sold seats"

        # Twenty buyers pay; the other thirty (28 of the rush, the 2 early) let their
        # window lapse.
        winners = [(n, a.json()["order_id"]) for n, a in enumerate(answers) if a.status == 201]
        for n, order_id in winners[:20]:
            paid = await d.nodes[n % 2].call(
                "POST",
                f"/api/v1/orders/{order_id}/pay",
                tokens[n],
                {"payment_method": "alipay", "payment_token": "alipay_token_xxx"},
            )
            assert paid.status == 200, paid.json()
        d.clock.advance(WINDOW + timedelta(seconds=1))

        async def unpaid_seats_are_back() -> bool:
            area = await d.area(area_id)
            return (area["reserved"], area["sold"], area["available"]) == (0, 20, 30)

        await eventually(unpaid_seats_are_back)
        cancelled = select(func.count()).where(orders.c.status == "cancelled")
        await eventually(lambda: _equals(count(d.nodes[1], cancelled), 30))
        once = (
            select(order_transitions.c.order_id, func.count())
            .where(order_transitions.c.to_status == "cancelled")
            .group_by(order_transitions.c.order_id)
        )
        async with d.nodes[0].booking.engine.connect() as conn:
            per_order = dict((await conn.execute(once)).all())
        assert len(per_order) == 30
        assert set(per_order.values()) == {1}

        async def events_published() -> bool:
            return len(d.events("orders.cancelled")) == 30

        await eventually(events_published)
        assert Counter(e.data["reason"] for e in d.events("orders.cancelled")) == {"timeout": 30}
        assert len(d.events("orders.created")) == 50
        assert len(d.events("orders.paid")) == 20

        # The returned seats can be bought again, through the counter, on either instance.
        counter = availability_key(session_id, area_id)

        async def counter_given_back() -> bool:
            return await d.nodes[0].kernel.cache.counter_get(counter) == 30

        await eventually(counter_given_back)
        again = await d.buyers(31)
        second = await asyncio.gather(*(buy(n, t) for n, t in enumerate(again)))
        assert Counter(a.status for a in second) == {201: 30, 409: 1}
        area = await d.area(area_id)
        assert (area["reserved"] + area["sold"], area["available"]) == (50, 0)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# -- counters -------------------------------------------------------------------------------


async def test_a_wrong_counter_is_corrected_from_the_database(cluster_settings: Settings) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        first = d.nodes[0]
        assert (
            await first.call("POST", "/api/v1/orders", token, order_body(session_id, area_id))
        ).status == 201
        # The counter says sold out, but the database has nine seats left.
        await first.kernel.cache.counter_set(availability_key(session_id, area_id), 0)
        refused = await first.call("POST", "/api/v1/orders", token, order_body(session_id, area_id))
        assert (refused.status, refused.json()["available"]) == (409, 0)
        assert await d.nodes[1].booking.reconcile_counters() == 0  # it never saw the area
        assert await first.booking.reconcile_counters() == 1
        assert await first.kernel.cache.counter_get(availability_key(session_id, area_id)) == 9
        accepted = await d.nodes[1].call(
            "POST", "/api/v1/orders", token, order_body(session_id, area_id)
        )
        assert accepted.status == 201


async def test_a_counter_that_lets_too_many_through_is_corrected_by_the_reservation(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(1)
        tokens = await d.buyers(2)
        node = d.nodes[0]
        assert (
            await node.call("POST", "/api/v1/orders", tokens[0], order_body(session_id, area_id))
        ).status == 201
        await node.kernel.cache.counter_set(availability_key(session_id, area_id), 5)
        refused = await node.call(
            "POST", "/api/v1/orders", tokens[1], order_body(session_id, area_id)
        )
        assert (refused.status, refused.json()["available"]) == (409, 0)
        assert await node.kernel.cache.counter_get(availability_key(session_id, area_id)) == 0
        area = await d.area(area_id)
        assert area["reserved"] == 1


# -- payment racing expiry ------------------------------------------------------------------


async def place(node: Node, token: str, session_id: str, area_id: str, quantity: int = 2) -> str:
    answer = await node.call(
        "POST", "/api/v1/orders", token, order_body(session_id, area_id, quantity)
    )
    assert answer.status == 201, answer.json()
    order_id: str = answer.json()["order_id"]
    return order_id


async def pay(node: Node, token: str, order_id: str) -> Response:
    return await node.call(
        "POST",
        f"/api/v1/orders/{order_id}/pay",
        token,
        {"payment_method": "alipay", "payment_token": "alipay_token_xxx"},
    )


async def test_a_charge_that_loses_the_race_to_the_expiry_is_refunded(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        payer, sweeper = d.nodes
        order_id = await place(payer, token, session_id, area_id)

        async def expiry_strikes() -> None:
            d.clock.advance(WINDOW)
            assert await sweeper.booking.expire_due() == 1

        payer.provider.after_charge = expiry_strikes
        lost = await pay(payer, token, order_id)

        assert (lost.status, lost.json()["code"]) == (409, "invalid_state_transition")
        assert lost.json()["order_status"] == "cancelled"
        charge = await payer.provider.lookup(order_id)
        assert charge is not None
        assert charge.reference is not None
        assert await payer.provider.refunded_amount(charge.reference) == Decimal("2560")
        area = await d.area(area_id)
        assert (area["reserved"], area["sold"], area["available"]) == (0, 0, 10)
        async with payer.booking.engine.connect() as conn:
            statuses = (await conn.execute(select(payments.c.status))).scalars().all()
        assert statuses == ["refunded"]
        order = (await payer.call("GET", f"/api/v1/orders/{order_id}", token)).json()
        assert (order["status"], order["tickets"]) == ("cancelled", [])


async def test_an_expiry_that_lands_between_confirmation_and_commit_still_leaves_one_winner(
    cluster_settings: Settings,
) -> None:
    # The sweeping instance's clock runs ahead: it sees the order expired while the paying
    # instance still sees it payable, so only the conditional update can decide.
    behind, ahead = ManualClock(), ManualClock(T0 + WINDOW + timedelta(seconds=1))
    async with deployment(cluster_settings, clocks=[behind, ahead]) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        payer, sweeper = d.nodes
        order_id = await place(payer, token, session_id, area_id)
        confirm = payer.booking.catalog.confirm

        async def confirm_then_expire(reservation_id: str) -> Any:
            confirmed = await confirm(reservation_id)
            assert await sweeper.booking.expire_due() == 1
            return confirmed

        payer.booking.catalog.confirm = confirm_then_expire  # type: ignore[method-assign]
        lost = await pay(payer, token, order_id)

        assert (lost.status, lost.json()["order_status"]) == (409, "cancelled")
        charge = await payer.provider.lookup(order_id)
        assert charge is not None
        assert charge.reference is not None
        assert await payer.provider.refunded_amount(charge.reference) == Decimal("2560")
        area = await d.area(area_id)
        assert (area["reserved"], area["sold"], area["available"]) == (0, 0, 10)
        paid_transitions = select(func.count()).where(order_transitions.c.to_status == "paid")
        assert await count(payer, paid_transitions) == 0


async def test_a_payment_that_wins_leaves_the_sweeper_nothing_to_do(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        payer, sweeper = d.nodes
        order_id = await place(payer, token, session_id, area_id)
        d.clock.advance(WINDOW - timedelta(seconds=1))
        assert (await pay(payer, token, order_id)).status == 200
        d.clock.advance(timedelta(seconds=2))
        assert await sweeper.booking.expire_due() == 0
        area = await d.area(area_id)
        assert (area["reserved"], area["sold"]) == (0, 2)
        charge = await payer.provider.lookup(order_id)
        assert charge is not None
        assert charge.reference is not None
        assert await payer.provider.refunded_amount(charge.reference) == 0


async def test_paying_after_the_window_expires_the_order_on_the_spot(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        node = d.nodes[0]
        order_id = await place(node, token, session_id, area_id)
        d.clock.advance(WINDOW)
        late = await pay(node, token, order_id)
        assert (late.status, late.json()["order_status"]) == (409, "cancelled")
        assert await node.provider.lookup(order_id) is None  # never charged
        area = await d.area(area_id)
        assert area["available"] == 10


async def test_many_payments_racing_many_expiries_each_end_exactly_one_way(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(40)
        tokens = await d.buyers(20)
        payer, sweeper = d.nodes
        placed = [await place(payer, t, session_id, area_id) for t in tokens]
        d.clock.advance(WINDOW - timedelta(milliseconds=1))

        async def expire_soon() -> int:
            await asyncio.sleep(0)
            d.clock.advance(timedelta(milliseconds=1))
            return await sweeper.booking.expire_due()

        answers, _ = await asyncio.gather(
            asyncio.gather(*(pay(payer, t, o) for t, o in zip(tokens, placed, strict=True))),
            expire_soon(),
        )
        paid = sum(1 for a in answers if a.status == 200)
        assert {a.status for a in answers} <= {200, 409}
        await sweeper.booking.expire_due()
        area = await d.area(area_id)
        assert (area["reserved"], area["sold"], area["available"]) == (0, 2 * paid, 40 - 2 * paid)
        refunded = 0
        for order_id, answer in zip(placed, answers, strict=True):
            charge = await payer.provider.lookup(order_id)
            if answer.status == 200:
                assert charge is not None
                assert charge.reference is not None
                assert await payer.provider.refunded_amount(charge.reference) == 0
            elif charge is not None and charge.reference is not None:
                assert await payer.provider.refunded_amount(charge.reference) == Decimal("2560")
                refunded += 1
        statuses = select(orders.c.status, func.count()).group_by(orders.c.status)
        async with payer.booking.engine.connect() as conn:
            by_status = dict((await conn.execute(statuses)).all())
        expected = {"paid": paid, "cancelled": 20 - paid}
        assert by_status == {status: n for status, n in expected.items() if n}


# -- sweepers on two instances --------------------------------------------------------------


async def test_two_instances_sweeping_at_once_cancel_each_expired_order_once(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(60)
        tokens = await d.buyers(20)
        for n, token in enumerate(tokens):
            await place(d.nodes[n % 2], token, session_id, area_id, 3)
        d.clock.advance(WINDOW)
        swept = await asyncio.gather(*(node.booking.expire_due() for node in d.nodes * 3))
        assert sum(swept) == 20
        area = await d.area(area_id)
        assert (area["reserved"], area["available"]) == (0, 60)
        once = select(func.count()).where(order_transitions.c.to_status == "cancelled")
        assert await count(d.nodes[0], once) == 20
        quotas = select(func.coalesce(func.sum(user_quotas.c.quantity), 0))
        assert await count(d.nodes[0], quotas) == 0

        async def all_published() -> bool:
            return len(d.events("orders.cancelled")) == 20

        await eventually(all_published)
        assert len({e.data["order_id"] for e in d.events("orders.cancelled")}) == 20


async def test_paid_orders_complete_a_week_after_their_session_ends(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        node = d.nodes[0]
        order_id = await place(node, token, session_id, area_id)
        assert (await pay(node, token, order_id)).status == 200
        session_end = d.clock.now + timedelta(days=30, hours=3)
        d.clock.now = session_end + timedelta(days=7) - timedelta(seconds=1)
        assert await node.booking.complete_due() == 0
        d.clock.advance(timedelta(seconds=1))
        done = await asyncio.gather(*(n.booking.complete_due() for n in d.nodes))
        assert sum(done) == 1
        order = (await node.call("GET", f"/api/v1/orders/{order_id}", token)).json()
        assert order["status"] == "completed"

        async def published() -> bool:
            return len(d.events("orders.completed")) == 1

        await eventually(published)


# -- the outbox across a crash --------------------------------------------------------------


async def test_events_committed_by_a_process_that_died_before_publishing_go_out_on_restart(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings, instances=1) as d:
        session_id, area_id = await d.stock_area(10)
        tokens = await d.buyers(2)
        dying = d.nodes[0]
        await dying.booking.relay.stop()  # the process dies after commit, before publishing
        kept = await place(dying, tokens[0], session_id, area_id)
        assert (await pay(dying, tokens[0], kept)).status == 200
        dropped = await place(dying, tokens[1], session_id, area_id)
        cancel = await dying.call("POST", f"/api/v1/orders/{dropped}/cancel", tokens[1])
        assert cancel.status == 200
        await asyncio.sleep(0.2)
        assert dying.events == []
        assert await dying.booking.relay.backlog() == 4

        # A new process starts on the same database: its relay publishes the backlog.
        reborn = Kernel.from_settings(cluster_settings)
        received: list[Event] = []

        async def record(event: Event) -> None:
            received.append(event)

        await reborn.broker.start()
        await reborn.broker.subscribe("orders.>", "test-recorder", record)
        relay = OutboxRelay(dying.booking.engine, outbox, reborn.broker, poll_interval=0.05)
        relay.start()
        try:

            async def all_four() -> bool:
                return len(received) == 4

            await eventually(all_four)
        finally:
            await relay.stop()
            await reborn.broker.close()
        assert [(e.type, e.data["order_id"]) for e in received] == [
            ("orders.created", kept),
            ("orders.paid", kept),
            ("orders.created", dropped),
            ("orders.cancelled", dropped),
        ]
        assert await relay.backlog() == 0
        paid = next(e for e in received if e.type == "orders.paid")
        assert len(paid.data["tickets"]) == 2
        assert paid.data["total_amount"] == "2560"


# -- what the sweepers finish ---------------------------------------------------------------


async def test_an_approved_refund_the_provider_could_not_carry_out_is_finished_later(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        node = d.nodes[0]
        order_id = await place(node, token, session_id, area_id)
        assert (await pay(node, token, order_id)).status == 200
        asked = await node.call("POST", f"/api/v1/orders/{order_id}/refund-requests", token)
        rid = asked.json()["refund_request_id"]
        node.provider.unreachable_refunds = 1
        approved = await node.call("POST", f"/api/v1/admin/refund-requests/{rid}/approve", d.admin)
        assert approved.status == 202, approved.json()
        assert (approved.json()["status"], approved.json()["order_status"]) == ("approved", "paid")
        assert approved.json()["refund_completed"] is False
        order = (await node.call("GET", f"/api/v1/orders/{order_id}", token)).json()
        assert {t["status"] for t in order["tickets"]} == {"void"}  # the gate refuses them now

        assert await d.nodes[1].booking.finish_refunds() == 0  # not before a grace period
        d.clock.advance(timedelta(minutes=1))
        assert sum(await asyncio.gather(*(n.booking.finish_refunds() for n in d.nodes))) >= 1
        order = (await node.call("GET", f"/api/v1/orders/{order_id}", token)).json()
        assert order["status"] == "refunded"
        charge = await node.provider.lookup(order_id)
        assert charge is not None
        assert charge.reference is not None
        assert await node.provider.refunded_amount(charge.reference) == Decimal("2560")
        assert (await d.area(area_id))["available"] == 10
        assert await node.booking.finish_refunds() == 0


async def test_a_charge_whose_answer_was_lost_is_refunded_once_its_order_expired(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        node = d.nodes[0]
        order_id = await place(node, token, session_id, area_id)
        timed_out = await node.call(
            "POST",
            f"/api/v1/orders/{order_id}/pay",
            token,
            {"payment_method": "card", "payment_token": "timeout"},
        )
        assert timed_out.status == 504
        charge = await node.provider.lookup(order_id)
        assert charge is not None
        assert charge.reference is not None  # the buyer was charged; nobody retried
        d.clock.advance(timedelta(minutes=5))
        assert await node.booking.settle_payments() == 0  # pending: a retry would find it
        d.clock.advance(WINDOW)
        assert await d.nodes[1].booking.expire_due() == 1
        assert await node.booking.settle_payments() == 1
        assert await node.provider.refunded_amount(charge.reference) == Decimal("2560")
        assert await node.booking.settle_payments() == 0
        async with node.booking.engine.connect() as conn:
            statuses = (await conn.execute(select(payments.c.status))).scalars().all()
        assert statuses == ["refunded"]


async def test_seats_whose_release_failed_are_returned_by_the_sweeper(
    cluster_settings: Settings,
) -> None:
    async with deployment(cluster_settings) as d:
        session_id, area_id = await d.stock_area(10)
        (token,) = await d.buyers(1)
        node = d.nodes[0]
        order_id = await place(node, token, session_id, area_id, 3)
        release = node.booking.catalog.release

        async def catalog_down(reservation_id: str) -> Any:
            raise UpstreamUnavailable("catalog down (on purpose)")

        node.booking.catalog.release = catalog_down  # type: ignore[method-assign]
        cancelled = await node.call("POST", f"/api/v1/orders/{order_id}/cancel", token)
        assert cancelled.status == 200
        assert (await d.area(area_id))["available"] == 7
        node.booking.catalog.release = release  # type: ignore[method-assign]
        d.clock.advance(timedelta(seconds=10))
        assert await d.nodes[1].booking.release_pending() == 1
        assert (await d.area(area_id))["available"] == 10
        counter = await node.kernel.cache.counter_get(availability_key(session_id, area_id))
        assert counter == 10
        assert await node.booking.release_pending() == 0
