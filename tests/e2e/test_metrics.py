"""/metrics through the gateway: one scrape shows every service in all-in-one mode, and the
counters and gauges move with the traffic; /readyz turns false while a dependency is down."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from marquee.compose import all_in_one
from marquee.gateway.app import Gateway
from marquee.platform.cache import open_cache
from marquee.platform.kernel import Kernel
from marquee.platform.settings import Settings
from marquee.platform.transport import (
    AsgiTransport,
    Response,
    Transport,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.e2e.conftest import Api

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(answer: Response) -> Scrape:
    assert answer.status == 200
    assert (answer.header("content-type") or "").startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def value(scrape: Scrape, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return scrape.get((name, frozenset(labels.items())), 0.0)


class Client:
    """The gateway's API from many addresses: each call a new client IP unless one is given,
    so only the calls meant to hit the rate limit do."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._ips = (f"10.7.{i // 250}.{i % 250 + 1}" for i in itertools.count())

    async def call(self, method: str, path: str, **kwargs: Any) -> Response:
        kwargs.setdefault("ip", next(self._ips))
        return await self.api.request(method, path, **kwargs)

    async def scrape(self) -> Scrape:
        return parse(await self.call("GET", "/metrics"))


@pytest.fixture
async def client(e2e_settings: Settings) -> AsyncIterator[Client]:
    settings = e2e_settings.model_copy(update={"rate_limit_per_second": 1.0, "rate_limit_burst": 3})
    gateway = all_in_one(settings)
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        yield Client(Api(AsgiTransport(gateway)))


async def on_sale(client: Client, capacity: int) -> tuple[str, str]:
    """A show on sale with one area of ``capacity`` seats: (session ID, area ID)."""
    login = await client.call(
        "POST",
        "/api/v1/auth/login",
        json={"email": "admin@marquee.test", "password": "AdminPass123"},
    )
    admin = login.json()["access_token"]
    show = await client.call(
        "POST",
        "/api/v1/admin/shows",
        token=admin,
        json={
            "title": "Metrics Live",
            "category": "演唱会",
            "venue": "上海体育场",
            "city": "上海",
            "status": "on_sale",
        },
    )
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    session = await client.call(
        "POST",
        f"/api/v1/admin/shows/{show.json()['show_id']}/sessions",
        token=admin,
        json={
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "per_user_limit": 4,
        },
    )
    session_id = session.json()["session_id"]
    area = await client.call(
        "POST",
        f"/api/v1/admin/sessions/{session_id}/seat-areas",
        token=admin,
        json={"name": "VIP A区", "price": 1280, "capacity": capacity},
    )
    assert area.status == 201, area.json()
    return session_id, area.json()["area_id"]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the metrics never got there")
        await asyncio.sleep(0.05)


async def test_one_gateway_scrape_shows_every_service_and_moves_with_traffic(
    client: Client,
) -> None:
    before = await client.scrape()
    session_id, area_id = await on_sale(client, capacity=10)
    buyer = await client.call(
        "POST",
        "/api/v1/auth/register",
        json={"email": "bob@example.com", "password": "SecurePass123", "full_name": "Bob"},
    )
    token = buyer.json()["access_token"]
    order = await client.call(
        "POST",
        "/api/v1/orders",
        token=token,
        json={"session_id": session_id, "seat_area_id": area_id, "quantity": 2},
    )
    assert order.status == 201, order.json()
    held = await client.scrape()
    paid = await client.call(
        "POST",
        f"/api/v1/orders/{order.json()['order_id']}/pay",
        token=token,
        json={"payment_method": "alipay", "payment_token": "alipay_token_xxx"},
    )
    assert paid.status == 200, paid.json()
    # Past the burst of 3 from one address: refused at the edge.
    answers = [await client.call("GET", "/api/v1/shows", ip="203.0.113.50") for _ in range(6)]
    refused = sum(answer.status == 429 for answer in answers)
    assert refused >= 3

    async def notified() -> bool:
        after = await client.scrape()
        return value(after, "marquee_notifications_sent_total") >= 2

    # Both emails (confirmation, e-tickets) go out after the broker hop.
    await eventually(notified)
    after = await client.scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    area = {"session": session_id, "area": area_id}
    assert value(held, "marquee_seats_reserved", **area) == 2
    assert value(held, "marquee_seats_available", **area) == 8
    assert value(after, "marquee_seats_capacity", **area) == 10
    assert value(after, "marquee_seats_reserved", **area) == 0
    assert value(after, "marquee_seats_sold", **area) == 2
    assert value(after, "marquee_seats_available", **area) == 8
    assert moved("marquee_gateway_rate_limited_total") == refused

    def requests(service: str, route: str, method: str, status: str) -> float:
        labels = {"service": service, "route": route, "method": method, "status": status}
        return moved("marquee_http_requests_total", **labels)

    assert requests("gateway", "booking", "POST", "201") == 1
    assert requests("booking", "/api/v1/orders", "POST", "201") == 1
    assert requests("gateway", "catalog", "GET", "429") == refused
    assert moved("marquee_broker_published_total") >= 2  # orders.created, orders.paid
    assert moved("marquee_broker_delivered_total") >= 2
    lag = {"durable": "notification", "subject": "orders.created"}
    assert value(after, "marquee_broker_consumer_lag", **lag) == 0
    assert value(after, "marquee_notification_deliveries_failed") == 0
    for source in ("catalog.seats", "notification.deliveries", "broker", "gateway.admission"):
        assert value(after, "marquee_metric_source_up", source=source) == 1
    assert value(after, "marquee_gateway_upstream_in_flight", service="booking") == 0


async def test_orders_by_state_and_the_outbox_backlog_are_scraped(client: Client) -> None:
    session_id, area_id = await on_sale(client, capacity=10)
    buyer = await client.call(
        "POST",
        "/api/v1/auth/register",
        json={"email": "carol@example.com", "password": "SecurePass123", "full_name": "Carol"},
    )
    before = await client.scrape()
    for source in ("booking.orders", "booking.outbox"):
        assert value(before, "marquee_metric_source_up", source=source) == 1
    order = await client.call(
        "POST",
        "/api/v1/orders",
        token=buyer.json()["access_token"],
        json={"session_id": session_id, "seat_area_id": area_id, "quantity": 1},
    )
    assert order.status == 201, order.json()

    async def relayed() -> bool:
        after = await client.scrape()
        return value(after, "marquee_outbox_published_total", service="booking") > value(
            before, "marquee_outbox_published_total", service="booking"
        )

    await eventually(relayed)
    after = await client.scrape()
    assert value(before, "marquee_orders", state="pending_payment") == 0
    assert value(after, "marquee_orders", state="pending_payment") == 1
    assert value(after, "marquee_orders", state="paid") == 0
    assert value(after, "marquee_outbox_backlog", service="booking") == 0


async def test_each_service_answers_metrics_of_its_own(e2e_settings: Settings) -> None:
    gateway = all_in_one(e2e_settings)
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        for name, transport in gateway.upstreams.items():
            scrape = parse(await transport.request("GET", "/metrics"))
            assert value(scrape, "marquee_metric_source_up", source="broker") == 1, name
        catalog = parse(await gateway.upstreams["catalog"].request("GET", "/metrics"))
        identity = parse(await gateway.upstreams["identity"].request("GET", "/metrics"))
    assert value(catalog, "marquee_metric_source_up", source="catalog.seats") == 1
    assert ("marquee_metric_source_up", frozenset({("source", "catalog.seats")})) not in identity


class Broken:
    """An upstream that fails the way it is told to."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        raise self.error

    async def close(self) -> None:
        return None


class Stuck:
    """An upstream that never answers until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        await self.release.wait()
        return Response(200, [("content-type", "application/json")], b"{}")

    async def close(self) -> None:
        return None


async def test_shed_requests_and_upstream_failures_are_counted_by_upstream(
    settings: Settings,
) -> None:
    settings = settings.model_copy(
        update={"upstream_concurrency": 1, "upstream_queue": 0, "rate_limit_per_second": 1000.0}
    )
    stuck = Stuck()
    upstreams: dict[str, Transport] = {
        "catalog": stuck,
        "identity": Broken(UpstreamTimeout("/api/v1/auth/login")),
        "booking": Broken(UpstreamUnavailable("connection refused")),
        "notification": Broken(RuntimeError("garbled answer")),
    }
    kernel = Kernel.from_settings(settings)
    gateway = Gateway(kernel, upstreams, storefront=False)
    api = Api(AsgiTransport(gateway))
    api.token = kernel.tokens.issue_access("user-1", "customer", "u@example.com")
    async with LifespanManager(gateway):
        before = parse(await api.get("/metrics"))
        first = asyncio.create_task(api.get("/api/v1/shows"))
        while gateway.admission["catalog"].active == 0:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.001)
        shed = [await api.get("/api/v1/shows") for _ in range(3)]
        stuck.release.set()
        assert (await first).status == 200
        failures = [
            await api.post("/api/v1/auth/login", json={}),
            await api.get("/api/v1/orders"),
            await api.get("/api/v1/notifications"),
        ]
        after = parse(await api.get("/metrics"))

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert [answer.status for answer in shed] == [503, 503, 503]
    assert {answer.json()["code"] for answer in shed} == {"overloaded"}
    assert moved("marquee_gateway_shed_total", service="catalog", reason="queue_full") == 3
    assert [answer.status for answer in failures] == [504, 502, 502]
    errors = "marquee_gateway_upstream_errors_total"
    assert moved(errors, service="identity", kind="timeout") == 1
    assert moved(errors, service="booking", kind="unavailable") == 1
    assert moved(errors, service="notification", kind="bad_answer") == 1
    shed_requests = {"service": "gateway", "route": "catalog", "method": "GET", "status": "503"}
    assert moved("marquee_http_requests_total", **shed_requests) == 3


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_readiness_is_false_while_the_cache_is_down_and_says_which(
    e2e_settings: Settings,
) -> None:
    gateway = all_in_one(e2e_settings)
    api = Api(AsgiTransport(gateway))
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        kernel = gateway.kernel
        working = kernel.cache
        assert (await api.get("/readyz")).status == 200
        kernel.cache = open_cache(f"redis://127.0.0.1:{closed_port()}/0", prefix="down:")
        try:
            service = await gateway.upstreams["booking"].request("GET", "/readyz")
            edge = await api.get("/readyz")
        finally:
            await kernel.cache.close()
            kernel.cache = working
        recovered = await api.get("/readyz")

    assert service.status == 503
    checks = service.json()["checks"]
    assert checks["cache"].startswith("error: ")
    assert (checks["database"], checks["broker"]) == ("ok", "ok")
    assert edge.status == 503
    assert edge.json()["checks"]["booking"] == "status 503"
    assert edge.json()["checks"]["cache"].startswith("error")
    assert recovered.status == 200
