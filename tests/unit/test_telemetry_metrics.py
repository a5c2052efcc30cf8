"""Scrape-time metric sources: rendered with the live metrics, never stale, never fatal."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from marquee.platform.broker import Event
from marquee.platform.broker.memory import MemoryBroker
from marquee.platform.metrics import (
    BROKER_CONSUMER_LAG,
    ORDERS,
    Family,
    RequestMeter,
    Sample,
    Scraper,
    add_metric_source,
    broker_source,
    scrape_sources,
    sources_of,
)


def values(exposition: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by sample name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def app_with_state() -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(service="booking"))


async def test_a_source_is_read_at_every_scrape_and_leaves_nothing_behind() -> None:
    orders = {"paid": 3}
    app = app_with_state()

    async def read() -> list[Sample]:
        return [ORDERS.sample(count, state) for state, count in orders.items()]

    add_metric_source(app, "booking.orders", read)
    scraper = Scraper()
    first = values(await scraper.render(sources_of(app)))
    orders["paid"] = 4
    second = values(await scraper.render(sources_of(app)))
    unrelated = values(await scraper.render({}))

    paid = ("marquee_orders", frozenset({("state", "paid")}))
    up = ("marquee_metric_source_up", frozenset({("source", "booking.orders")}))
    assert (first[paid], second[paid], first[up]) == (3, 4, 1)
    assert paid not in unrelated
    assert up not in unrelated


async def test_a_failing_or_hanging_source_is_reported_down_without_failing_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("marquee.platform.metrics.SOURCE_TIMEOUT", 0.01)
    app = app_with_state()

    async def broken() -> list[Sample]:
        raise ConnectionError("database down")

    async def hanging() -> list[Sample]:
        await asyncio.Event().wait()
        return []

    async def fine() -> list[Sample]:
        return [ORDERS.sample(1, "created")]

    add_metric_source(app, "broken", broken)
    add_metric_source(app, "hanging", hanging)
    add_metric_source(app, "fine", fine)
    scrape = values(await Scraper().render(sources_of(app)))

    def up(name: str) -> float:
        return scrape[("marquee_metric_source_up", frozenset({("source", name)}))]

    assert (up("broken"), up("hanging"), up("fine")) == (0, 0, 1)
    assert scrape[("marquee_orders", frozenset({("state", "created")}))] == 1


def test_registering_a_source_again_replaces_it() -> None:
    app = app_with_state()

    async def one() -> list[Sample]:
        return []

    async def two() -> list[Sample]:
        return []

    add_metric_source(app, "booking.outbox", one)
    add_metric_source(app, "booking.outbox", two)
    assert sources_of(app) == {"booking.outbox": two}


def test_a_sample_must_have_its_familys_labels() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        BROKER_CONSUMER_LAG.sample(1, "notification")


async def test_counters_read_at_scrape_time_are_exposed_as_counters() -> None:
    events = Family("marquee_test_events", "Events.", (), "counter")

    async def read() -> list[Sample]:
        return [events.sample(7)]

    scrape = values(await Scraper().render({"test": read}))
    assert scrape[("marquee_test_events_total", frozenset())] == 7


async def test_a_broker_reports_its_counters_and_each_groups_lag() -> None:
    broker = MemoryBroker()
    await broker.start()
    handling, release = asyncio.Event(), asyncio.Event()

    async def slow(event: Event) -> None:
        handling.set()
        await release.wait()

    try:
        await broker.subscribe("orders.*", durable="notification", handler=slow)
        for _ in range(3):
            await broker.publish(Event(type="orders.created", data={}))
        await handling.wait()  # the worker took the first event and waits in the handler
        scrape = values(await Scraper().render({"broker": broker_source(broker)}))
    finally:
        release.set()
        await broker.close()

    group = frozenset({("durable", "notification"), ("subject", "orders.*")})
    lag = ("marquee_broker_consumer_lag", group)
    assert scrape[("marquee_broker_published_total", frozenset())] == 3
    assert scrape[("marquee_broker_delivered_total", frozenset())] == 1
    assert scrape[lag] == 2


def test_one_broker_shared_by_several_apps_is_read_once() -> None:
    broker = object()
    sources = scrape_sources([app_with_state(), app_with_state()], [broker, broker])
    assert list(sources) == ["broker"]


def test_a_method_nobody_uses_is_counted_as_other() -> None:
    meter = RequestMeter("gateway-test")
    meter.observe("BREW", "catalog", 405, 0.001)
    meter.observe("GET", "catalog", 200, 0.001)

    def count(method: str, status: str) -> float | None:
        labels = {"service": "gateway-test", "method": method, "route": "catalog"}
        return REGISTRY.get_sample_value("marquee_http_requests_total", labels | {"status": status})

    assert (count("OTHER", "405"), count("GET", "200"), count("BREW", "405")) == (1, 1, None)
