"""Prometheus metrics: live counters and histograms, plus values read at scrape time.

Live metrics (requests, latencies, the gateway's refusals) are prometheus-client objects at
module level: prometheus-client registers each name once per process, and in all-in-one mode
every service shares the process (the ``service`` label tells them apart).

Values that live elsewhere (seats in Catalog's database, an outbox backlog, a broker's counters
and consumer lag, notification outcomes) come from *sources* an app registers with
``add_metric_source``. A scrape asks the sources of the apps it covers (a service's /metrics:
that service; the gateway's in all-in-one mode: every service in the process) and renders
their samples with the live metrics. Nothing from a source outlives its scrape, so a stopped
app leaves no stale series behind, and any number of apps can be created in one process.
Every metric Marquee exports is declared in this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# -- live metrics ---------------------------------------------------------------------------

REQUESTS = Counter(
    "marquee_http_requests_total",
    "HTTP requests answered, by service, method, route template and status.",
    ["service", "method", "route", "status"],
)
LATENCY = Histogram(
    "marquee_http_request_duration_seconds",
    "Time to answer an HTTP request, by service, method and route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMITED = Counter(
    "marquee_gateway_rate_limited_total",
    "Requests the gateway refused with 429 because the client's token bucket was empty.",
)
SHED = Counter(
    "marquee_gateway_shed_total",
    "Requests the gateway shed with 503 because an upstream's admission queue was full"
    " (queue_full) or the wait for a slot ran out (queue_timeout), by upstream.",
    ["service", "reason"],
)
SHARED_REFUSALS = Counter(
    "marquee_gateway_shared_refusals_total",
    "Requests the gateway answered itself with a refusal its upstream marked as shared"
    " (Marquee-Refusal-Max-Age: the sold-out answer during a rush), by upstream.",
    ["service"],
)
UPSTREAM_ERRORS = Counter(
    "marquee_gateway_upstream_errors_total",
    "Proxied requests that got no usable answer from their upstream, by upstream and kind"
    " (timeout: 504; unavailable, bad_answer: 502).",
    ["service", "kind"],
)

# Paths that answer probes and scrapes: counting them would drown the traffic worth watching.
UNCOUNTED_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
# Any other method is one label value, so a client inventing methods cannot grow the label set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMeter:
    """Counts and times one service's requests, caching the labelled children it uses.

    ``route`` must come from a bounded set (route templates, upstream names), never a raw path.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                REQUESTS.labels(self.service, method, route, str(status)),
                LATENCY.labels(self.service, method, route),
            )
            self._children[key] = children
        count, latency = children
        count.inc()
        latency.observe(seconds)


class MetricsMiddleware:
    """Counts and times every request by its route template (never the raw path, whose IDs
    would make unbounded label sets)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.meter = RequestMeter(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template not in UNCOUNTED_ROUTES:
                self.meter.observe(scope["method"], template, status, time.perf_counter() - started)


# -- values read at scrape time -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Family:
    """A metric whose values a source reads at scrape time: name, help, labels and type.

    A counter's name is given without ``_total``; the exposition adds it.
    """

    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    kind: Literal["gauge", "counter"] = "gauge"

    def sample(self, value: float, *labels: str) -> Sample:
        if len(labels) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {labels}")
        return Sample(self, labels, value)


@dataclass(frozen=True, slots=True)
class Sample:
    family: Family
    labels: tuple[str, ...]
    value: float


Source = Callable[[], Awaitable[Iterable[Sample]]]

SOURCE_UP = Family(
    "marquee_metric_source_up",
    "1 when a scrape-time source answered this scrape, 0 when it failed or timed out"
    " (its metrics are then missing from this scrape).",
    ("source",),
)
SEATS_CAPACITY = Family(
    "marquee_seats_capacity",
    "Seats in an area of a session that has not ended yet.",
    ("session", "area"),
)
SEATS_RESERVED = Family(
    "marquee_seats_reserved",
    "Seats held for unpaid orders in an area of a session that has not ended yet.",
    ("session", "area"),
)
SEATS_SOLD = Family(
    "marquee_seats_sold",
    "Seats sold in an area of a session that has not ended yet.",
    ("session", "area"),
)
SEATS_AVAILABLE = Family(
    "marquee_seats_available",
    "Seats still for sale in an area of a session that has not ended yet.",
    ("session", "area"),
)
ORDERS = Family("marquee_orders", "Orders by state.", ("state",))
OUTBOX_BACKLOG = Family(
    "marquee_outbox_backlog",
    "Committed events waiting for the outbox relay to publish them, by publishing service.",
    ("service",),
)
OUTBOX_PUBLISHED = Family(
    "marquee_outbox_published",
    "Events this process's outbox relay published, by publishing service.",
    ("service",),
    "counter",
)
BROKER_PUBLISHED = Family(
    "marquee_broker_published", "Events this process published to the broker.", (), "counter"
)
BROKER_DELIVERED = Family(
    "marquee_broker_delivered",
    "Event deliveries to this process's handlers, redeliveries included.",
    (),
    "counter",
)
BROKER_REDELIVERED = Family(
    "marquee_broker_redelivered",
    "Deliveries to this process's handlers that were a second or later attempt.",
    (),
    "counter",
)
BROKER_DEAD_LETTERED = Family(
    "marquee_broker_dead_lettered",
    "Events this process's handlers gave up on after their last attempt.",
    (),
    "counter",
)
BROKER_CONSUMER_LAG = Family(
    "marquee_broker_consumer_lag",
    "Events waiting to be delivered to a durable consumer group, by group and subject.",
    ("durable", "subject"),
)
GATEWAY_IN_FLIGHT = Family(
    "marquee_gateway_upstream_in_flight",
    "Requests the gateway has in flight to an upstream.",
    ("service",),
)
GATEWAY_WAITING = Family(
    "marquee_gateway_upstream_waiting",
    "Requests queued at the gateway for a slot to an upstream.",
    ("service",),
)
NOTIFICATIONS_SENT = Family(
    "marquee_notifications_sent", "Notifications sent by this process.", (), "counter"
)
NOTIFICATIONS_RETRIED = Family(
    "marquee_notifications_retried",
    "Notification attempts that failed and were scheduled again.",
    (),
    "counter",
)
NOTIFICATIONS_FAILED = Family(
    "marquee_notifications_failed",
    "Notifications that failed for good (out of attempts, or a permanent error).",
    (),
    "counter",
)
NOTIFICATION_DELIVERIES_FAILED = Family(
    "marquee_notification_deliveries_failed",
    "Deliveries in the failed state, waiting for an operator to retry them.",
)


class _ScrapeSamples(Collector):
    """Yields the samples of the scrape being rendered (none outside a scrape)."""

    def __init__(self) -> None:
        self.samples: Sequence[Sample] = ()

    def describe(self) -> Iterable[Metric]:
        # Nothing to declare up front: the families vary with the apps in the process.
        return ()

    def collect(self) -> Iterable[Metric]:
        grouped: dict[Family, dict[tuple[str, ...], float]] = {}
        for sample in self.samples:
            # Two sources reporting one series (they should not): the first one wins.
            grouped.setdefault(sample.family, {}).setdefault(sample.labels, sample.value)
        for family, series in grouped.items():
            metric: GaugeMetricFamily | CounterMetricFamily
            if family.kind == "counter":
                metric = CounterMetricFamily(
                    family.name, family.documentation, labels=family.labels
                )
            else:
                metric = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            for labels, value in series.items():
                metric.add_metric(list(labels), value)
            yield metric


_SCRAPE = _ScrapeSamples()
REGISTRY.register(_SCRAPE)

SOURCE_TIMEOUT = 5.0  # seconds one source may take before the scrape goes on without it


class HasState(Protocol):
    @property
    def state(self) -> Any: ...


def add_metric_source(app: HasState, name: str, source: Source) -> None:
    """Have ``source`` report its samples on every scrape of ``app``'s /metrics (and, in
    all-in-one mode, of the gateway's). ``name`` identifies it in ``marquee_metric_source_up``;
    registering a name again replaces the earlier source (a restarted lifespan does)."""
    sources: dict[str, Source] | None = getattr(app.state, "metric_sources", None)
    if sources is None:
        sources = app.state.metric_sources = {}
    sources[name] = source


def sources_of(app: object) -> dict[str, Source]:
    state = getattr(app, "state", None)
    found: dict[str, Source] = getattr(state, "metric_sources", None) or {}
    return found


class Scraper:
    """Renders the metrics of some apps and brokers; one scrape at a time per scraper, so a
    flood of scrapes costs the databases one set of queries at a time."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None

    async def render(self, sources: dict[str, Source]) -> bytes:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            samples = await read_sources(sources)
        # No await from here on: no other scrape can swap the samples in between.
        _SCRAPE.samples = samples
        try:
            return generate_latest(REGISTRY)
        finally:
            _SCRAPE.samples = ()


async def read_sources(sources: dict[str, Source]) -> list[Sample]:
    """Every source's samples, read concurrently; a failing source is reported down and
    logged, and never fails the scrape."""

    async def read(name: str, source: Source) -> list[Sample]:
        try:
            async with asyncio.timeout(SOURCE_TIMEOUT):
                samples = list(await source())
        except Exception as exc:
            log.warning("Metric source %s failed: %s: %s", name, type(exc).__name__, exc)
            return [SOURCE_UP.sample(0, name)]
        return [*samples, SOURCE_UP.sample(1, name)]

    names = list(sources)
    results = await asyncio.gather(*(read(name, sources[name]) for name in names))
    return [sample for result in results for sample in result]


def broker_source(broker: object) -> Source:
    """The broker's counters (``published``, ``delivered``, ``redelivered``,
    ``dead_lettered``) and, when it can tell, its consumer groups' lag (``consumer_lag()``,
    a mapping of (durable, subject) to events waiting)."""

    async def read() -> list[Sample]:
        samples: list[Sample] = []
        for family, attribute in (
            (BROKER_PUBLISHED, "published"),
            (BROKER_DELIVERED, "delivered"),
            (BROKER_REDELIVERED, "redelivered"),
            (BROKER_DEAD_LETTERED, "dead_lettered"),
        ):
            value = getattr(broker, attribute, None)
            if isinstance(value, int):
                samples.append(family.sample(value))
        lag = getattr(broker, "consumer_lag", None)
        if lag is not None:
            waiting: dict[tuple[str, str], int] = await lag()
            for (durable, subject), count in sorted(waiting.items()):
                samples.append(BROKER_CONSUMER_LAG.sample(count, durable, subject))
        return samples

    return read


def scrape_sources(apps: Iterable[object], brokers: Iterable[object]) -> dict[str, Source]:
    """The sources of ``apps`` plus one per distinct broker (all-in-one services share one)."""
    sources: dict[str, Source] = {}
    for app in apps:
        sources.update(sources_of(app))
    seen: set[int] = set()
    for broker in brokers:
        if id(broker) not in seen:
            seen.add(id(broker))
            sources["broker" if len(seen) == 1 else f"broker-{len(seen)}"] = broker_source(broker)
    return sources


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text format: live metrics, then this service's sources and broker."""
    app = request.app
    scraper: Scraper | None = getattr(app.state, "metric_scraper", None)
    if scraper is None:
        scraper = app.state.metric_scraper = Scraper()
    kernel = getattr(app.state, "kernel", None)
    brokers = [kernel.broker] if kernel is not None else []
    body = await scraper.render(scrape_sources([app], brokers))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# -- sources services register --------------------------------------------------------------


class Backlogged(Protocol):
    """What ``outbox_backlog_gauge`` reads from an ``OutboxRelay``."""

    published: int

    async def backlog(self) -> int: ...


def outbox_backlog_gauge(app: HasState, relay: Backlogged) -> None:
    """Report ``relay``'s backlog (committed, unpublished events) and how many events it
    published, labelled with the app's service. Call it in the lifespan that builds the relay."""
    service: str = app.state.service

    async def read() -> list[Sample]:
        return [
            OUTBOX_BACKLOG.sample(await relay.backlog(), service),
            OUTBOX_PUBLISHED.sample(relay.published, service),
        ]

    add_metric_source(app, f"{service}.outbox", read)


def orders_by_state_gauge(app: HasState, status: ColumnElement[Any], states: Iterable[str]) -> None:
    """Report how many rows of ``status``'s table are in each state (``marquee_orders``), with
    a zero for each of ``states`` that has none; one GROUP BY on the app's database per scrape.
    """
    known = tuple(str(state) for state in states)
    service: str = app.state.service

    async def read() -> list[Sample]:
        engine: AsyncEngine | None = getattr(app.state, "engine", None)
        if engine is None:
            return []  # not started yet
        async with engine.connect() as conn:
            rows = (await conn.execute(select(status, func.count()).group_by(status))).all()
        counts = dict.fromkeys(known, 0)
        counts.update({str(state): int(count) for state, count in rows})
        return [ORDERS.sample(count, state) for state, count in sorted(counts.items())]

    add_metric_source(app, f"{service}.orders", read)
