"""The broker contract, run against the in-process adapter and NATS JetStream alike.

The parametrised tests are what every adapter promises; the NATS-only tests cover what needs a
server (durability across processes and restarts, publish deduplication, failing fast).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from marquee.platform.broker import BrokerFactory, Event, open_broker
from marquee.platform.broker.memory import MemoryBroker
from marquee.platform.context import current_request_id
from marquee_nats import BrokerUnavailableError, NatsBroker
from tests import servers

AnyBroker = MemoryBroker | NatsBroker


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, polling every 10 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.01)


@dataclass
class Brokers:
    """Opens started brokers of one kind on one private prefix; closes and deletes them after."""

    kind: str
    url: str
    prefix: str = field(default_factory=lambda: servers.unique("mqtest"))
    opened: list[AnyBroker] = field(default_factory=list)

    async def open(self) -> AnyBroker:
        # Short timings keep redelivery tests fast; the contract is the same as in production.
        broker: AnyBroker
        if self.kind == "memory":
            broker = MemoryBroker(self.url, prefix=self.prefix, retry_base=0.01, retry_cap=0.05)
        else:
            broker = NatsBroker(
                self.url,
                prefix=self.prefix,
                ack_wait=1.0,
                retry_base=0.01,
                retry_cap=0.05,
                fetch_timeout=1.0,
            )
        await broker.start()
        self.opened.append(broker)
        return broker

    async def cleanup(self) -> None:
        for broker in self.opened:
            await broker.close()
        if self.kind == "nats":
            janitor = NatsBroker(self.url, prefix=self.prefix)
            await janitor.start()
            await janitor.destroy()
            await janitor.close()


@dataclass
class Recorder:
    """A handler that records what it receives (optionally failing first)."""

    fail_times: int = 0
    received: list[Event] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    request_ids: list[str | None] = field(default_factory=list)

    async def __call__(self, event: Event) -> None:
        self.attempts[event.id] += 1
        self.request_ids.append(current_request_id())
        if self.attempts[event.id] <= self.fail_times:
            raise RuntimeError(f"handler failure #{self.attempts[event.id]} (on purpose)")
        self.received.append(event)

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.received]


def order_event(n: int = 0, type_: str = "orders.created") -> Event:
    return Event(type=type_, data={"order_id": f"order-{n}"}, request_id=f"req-{n}")


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Synchronous, so only the NATS variant asks for the server and memory runs anywhere."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("nats_url")
    return url


@pytest.fixture
async def brokers(broker_url: str) -> AsyncIterator[Brokers]:
    kit = Brokers(broker_url.split("://", 1)[0], broker_url)
    yield kit
    await kit.cleanup()


@pytest.fixture
async def broker(brokers: Brokers) -> AnyBroker:
    return await brokers.open()


@pytest.fixture
async def nats_brokers(nats_url: str) -> AsyncIterator[Brokers]:
    kit = Brokers("nats", nats_url)
    yield kit
    await kit.cleanup()


# --- the contract, for every adapter ---------------------------------------------------------


async def test_a_published_event_arrives_with_its_whole_envelope(broker: AnyBroker) -> None:
    recorder = Recorder()
    await broker.subscribe("orders.created", "notification", recorder)
    event = Event(
        type="orders.created",
        data={
            "order_id": "order-1",
            "show": "周杰伦 嘉年华 世界巡回演唱会",
            "seats": [{"area": "看台 A", "quantity": 2}],
            "total": "1760.00",
            "paid": False,
        },
        request_id="req-abc-123",
    )

    await broker.publish(event)

    await eventually(lambda: len(recorder.received) == 1)
    assert recorder.received == [event]
    assert recorder.request_ids == ["req-abc-123"]
    await broker.ping()


async def test_every_durable_gets_every_event(broker: AnyBroker) -> None:
    notification, audit = Recorder(), Recorder()
    await broker.subscribe("orders.created", "notification", notification)
    await broker.subscribe("orders.created", "audit", audit)
    events = [order_event(n) for n in range(5)]

    for event in events:
        await broker.publish(event)

    await eventually(lambda: len(notification.received) == 5 and len(audit.received) == 5)
    assert sorted(notification.ids) == sorted(audit.ids) == sorted(e.id for e in events)


async def test_subscribers_sharing_a_durable_each_handle_a_different_share(
    broker: AnyBroker,
) -> None:
    first, second = Recorder(), Recorder()
    await broker.subscribe("orders.created", "notification", first)
    await broker.subscribe("orders.created", "notification", second)
    events = [order_event(n) for n in range(20)]

    for event in events:
        await broker.publish(event)

    await eventually(lambda: len(first.received) + len(second.received) == 20)
    # One more event as a barrier: a duplicate of the first twenty would have come before it.
    await broker.publish(barrier := order_event(99))
    await eventually(lambda: barrier.id in first.ids + second.ids)
    handled = Counter(first.ids + second.ids)
    assert set(handled) == {e.id for e in events} | {barrier.id}
    assert set(handled.values()) == {1}


async def test_a_subscription_with_wildcards_gets_only_the_matching_subjects(
    broker: AnyBroker,
) -> None:
    recorder = Recorder()
    await broker.subscribe("orders.*", "audit", recorder)

    await broker.publish(created := order_event(1, "orders.created"))
    await broker.publish(order_event(2, "users.created"))
    await broker.publish(paid := order_event(3, "orders.paid"))

    await eventually(lambda: len(recorder.received) == 2)
    assert recorder.ids == [created.id, paid.id]


async def test_a_failed_event_is_delivered_again_and_its_effect_happens_once(
    broker: AnyBroker,
) -> None:
    recorder = Recorder(fail_times=1)
    await broker.subscribe("orders.created", "notification", recorder)
    event = order_event(1)

    await broker.publish(event)

    await eventually(lambda: len(recorder.received) == 1)
    assert recorder.ids == [event.id]
    assert recorder.attempts[event.id] == 2
    assert recorder.request_ids == ["req-1", "req-1"]
    assert (broker.published, broker.delivered, broker.redelivered) == (1, 2, 1)


async def test_an_event_that_always_fails_is_dropped_after_max_deliver(
    broker: AnyBroker,
) -> None:
    poison = order_event(1)

    async def handler(event: Event) -> None:
        if event.id == poison.id:
            raise RuntimeError("cannot handle this one (on purpose)")
        healthy.append(event.id)

    healthy: list[str] = []
    await broker.subscribe("orders.created", "notification", handler, max_deliver=3)
    await broker.publish(poison)
    await eventually(lambda: broker.dead_lettered == 1)

    # Later events still flow, and the dropped one never comes back.
    await broker.publish(later := order_event(2))
    await eventually(lambda: healthy == [later.id])
    assert broker.delivered == 4
    assert broker.redelivered == 2


# --- what only a server can do ----------------------------------------------------------------


@pytest.mark.nats
async def test_an_event_whose_consumer_dies_before_acknowledging_is_delivered_again(
    nats_brokers: Brokers,
) -> None:
    dying = await nats_brokers.open()
    started = asyncio.Event()

    async def hangs(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()

    await dying.subscribe("orders.created", "notification", hangs)
    await dying.publish(event := order_event(1))
    await asyncio.wait_for(started.wait(), 5)
    await dying.close()

    successor, recorder = await nats_brokers.open(), Recorder()
    await successor.subscribe("orders.created", "notification", recorder)

    await eventually(lambda: len(recorder.received) == 1)
    assert recorder.ids == [event.id]
    assert successor.redelivered == 1


@pytest.mark.nats
async def test_a_durable_catches_up_on_what_was_published_while_it_was_away(
    nats_brokers: Brokers,
) -> None:
    publisher = await nats_brokers.open()
    await publisher.publish(before := order_event(1))
    first_life, first = await nats_brokers.open(), Recorder()
    await first_life.subscribe("orders.created", "notification", first)
    await eventually(lambda: first.ids == [before.id])
    await first_life.close()

    await publisher.publish(while_away := order_event(2))
    second_life, second = await nats_brokers.open(), Recorder()
    await second_life.subscribe("orders.created", "notification", second)

    await eventually(lambda: second.ids == [while_away.id])


@pytest.mark.nats
async def test_processes_sharing_a_durable_each_handle_a_different_share(
    nats_brokers: Brokers,
) -> None:
    one, other = await nats_brokers.open(), await nats_brokers.open()
    first, second = Recorder(), Recorder()
    await one.subscribe("orders.created", "notification", first)
    await other.subscribe("orders.created", "notification", second)
    events = [order_event(n) for n in range(20)]

    for event in events:
        await one.publish(event)

    await eventually(lambda: len(first.received) + len(second.received) == 20)
    handled = Counter(first.ids + second.ids)
    assert set(handled) == {e.id for e in events}
    assert set(handled.values()) == {1}


@pytest.mark.nats
async def test_a_retried_publish_is_stored_once(nats_brokers: Brokers) -> None:
    broker, recorder = await nats_brokers.open(), Recorder()
    await broker.subscribe("orders.created", "notification", recorder)
    event = order_event(1)

    await broker.publish(event)
    await broker.publish(event)  # e.g. the outbox relay died before marking it published
    await broker.publish(barrier := order_event(2))

    await eventually(lambda: barrier.id in recorder.ids)
    assert recorder.ids == [event.id, barrier.id]


@pytest.mark.nats
async def test_starting_and_closing_nats_warns_of_nothing(
    nats_brokers: Brokers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    broker = await nats_brokers.open()
    await broker.close()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_starting_nats_against_an_unreachable_server_fails_fast_naming_the_url() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = NatsBroker(f"nats://marquee:s3cret@127.0.0.1:{port}", prefix="unreachable")
    began = time.monotonic()

    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}") as raised:
        await broker.start()

    assert time.monotonic() - began < 5
    assert "s3cret" not in str(raised.value)
    await broker.close()


def test_adapters_are_found_by_url_scheme() -> None:
    # Typed, so mypy checks that both classes fit the port and its factory signature.
    factories: dict[str, BrokerFactory] = {"memory": MemoryBroker, "nats": NatsBroker}
    assert sorted(factories) == ["memory", "nats"]
    assert isinstance(open_broker("memory://"), MemoryBroker)
    nats = open_broker("nats://127.0.0.1:4222", prefix="marquee")
    assert isinstance(nats, NatsBroker)
    assert nats.stream == "MARQUEE"
    with pytest.raises(ValueError, match="no broker plugin for kafka://"):
        open_broker("kafka://127.0.0.1:9092")


async def test_the_memory_broker_keeps_nothing_for_durables_that_subscribe_later() -> None:
    broker, recorder = MemoryBroker(prefix="marquee"), Recorder()
    await broker.start()
    try:
        await broker.publish(order_event(1))
        await broker.subscribe("orders.created", "notification", recorder)
        await broker.publish(later := order_event(2))

        await eventually(lambda: len(recorder.received) == 1)
        assert recorder.ids == [later.id]
    finally:
        await broker.close()
