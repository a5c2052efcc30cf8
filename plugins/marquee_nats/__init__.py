"""The NATS JetStream broker (``nats://``), found through the ``marquee.brokers`` entry point.

One stream per prefix captures ``{prefix}.>``; each (durable, subject) pair is a durable pull
consumer on it, shared by every process that subscribes under that name, so each event reaches
one member of the group and survives restarts of all of them.

Delivery is at least once: a message is acknowledged after its handler returns, redelivered
with a backoff (``nak`` with a delay) when the handler raises, redelivered after ``ack_wait``
when its consumer dies mid-way, and terminated after ``max_deliver`` attempts. Publishes carry
the event id as ``Nats-Msg-Id`` so a publish retried within the stream's duplicate window (two
minutes) is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.js import api
from nats.js.errors import NotFoundError

from marquee.platform.broker import Event, Handler
from marquee.platform.broker.memory import cancel_and_wait, redelivery_delay
from marquee.platform.context import request_id_var
from marquee.platform.telemetry import consume_span, publish_span

log = logging.getLogger(__name__)

DAY = 86_400.0


class BrokerUnavailableError(ConnectionError):
    """NATS (or its JetStream) could not be reached; the message names the URL."""


def name_token(text: str) -> str:
    """``text`` made safe for a stream or consumer name (no ``.``, ``*``, ``>``, spaces...)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def stream_name(prefix: str) -> str:
    return name_token(prefix).upper()


def consumer_name(durable: str, subject: str) -> str:
    """The JetStream consumer behind one durable group on one subject.

    A consumer has one filter subject, so the same durable name on two subjects needs two
    consumers. The readable part can collide (``orders.*`` and ``orders.>`` both read
    ``orders__``), so a short digest of the exact pair keeps them apart.
    """
    digest = hashlib.sha256(f"{durable}\0{subject}".encode()).hexdigest()[:8]
    return f"{name_token(durable)}-{name_token(subject)}-{digest}"


def redact(url: str) -> str:
    """The URL without its password, fit for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class NatsBroker:
    """The broker port over NATS JetStream.

    ``ack_wait`` is how long a delivered, unacknowledged event waits before JetStream gives it
    to another member (a handler must finish within it, or the event is handled twice; consumers
    are idempotent, so that costs time, not correctness). ``retry_base``/``retry_cap`` shape the
    backoff after a handler fails. ``max_age`` bounds how long the stream keeps events; a new
    durable starts from the oldest retained event.

    ``published``, ``delivered`` (redeliveries included), ``redelivered`` and ``dead_lettered``
    count since construction, and ``consumer_lag()`` asks JetStream, for metrics.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "marquee",
        ack_wait: float = 30.0,
        retry_base: float = 0.05,
        retry_cap: float = 5.0,
        connect_timeout: float = 2.0,
        fetch_timeout: float = 5.0,
        max_age: float = 7 * DAY,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.stream = stream_name(prefix)
        self._ack_wait = ack_wait
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._connect_timeout = connect_timeout
        self._fetch_timeout = fetch_timeout
        self._max_age = max_age
        # nats-py is untyped; its client objects stay behind these two attributes.
        self._nc: Any = None
        self._js: Any = None
        self._consumers: set[asyncio.Task[None]] = set()
        # (durable, subject) -> JetStream consumer name, for the groups this process joined.
        self._groups: dict[tuple[str, str], str] = {}
        self.published = 0
        self.delivered = 0
        self.redelivered = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        """Connect and make sure the stream exists; raise BrokerUnavailableError if we can't.

        The first connection fails fast instead of retrying for minutes, so a misconfigured
        service stops at start-up with a clear message. Once connected, the client reconnects
        for as long as it takes.
        """
        if self._nc is not None:
            return
        where = redact(self.url)
        try:
            nc = await nats.connect(
                self.url,
                name=f"marquee:{self.prefix}",
                connect_timeout=self._connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except Exception as exc:
            raise BrokerUnavailableError(
                f"no NATS server answered at {where} ({type(exc).__name__})"
            ) from exc
        # The initial-connect settings above would give up after one retry; from now on keep
        # trying (publishes fail meanwhile and the outbox retries them; /health reports it).
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 2
        js = nc.jetstream()
        try:
            await self._ensure_stream(js)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            await nc.close()
            raise BrokerUnavailableError(
                f"JetStream unavailable at {where} (is the server run with -js?): {exc!r}"
            ) from exc
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js

    async def publish(self, event: Event) -> None:
        """Store the event in the stream; returns once JetStream has acknowledged it."""
        js = self._require()
        with publish_span(event, "nats") as traced:
            await js.publish(
                f"{self.prefix}.{event.type}",
                traced.to_json(),
                stream=self.stream,
                headers={"Nats-Msg-Id": event.id},
            )
        self.published += 1

    async def subscribe(
        self, subject: str, durable: str, handler: Handler, *, max_deliver: int = 10
    ) -> None:
        """Create or update the durable pull consumer and start fetching for ``handler``.

        Every process (and every call) subscribing with the same ``durable`` and ``subject``
        shares one consumer, so each event goes to one of them. The latest subscriber's
        ``max_deliver`` and this broker's ``ack_wait`` become the consumer's settings.
        """
        js = self._require()
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        name = consumer_name(durable, subject)
        config = api.ConsumerConfig(
            name=name,
            durable_name=name,
            description=f"{durable} on {subject}",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_deliver=max_deliver,
            filter_subject=f"{self.prefix}.{subject}",
        )
        # add_consumer creates or updates, so changed settings reach an existing consumer.
        await js.add_consumer(self.stream, config)
        sub = await js.pull_subscribe_bind(durable=name, stream=self.stream)
        self._groups[(durable, subject)] = name
        task = asyncio.create_task(
            self._consume(sub, durable, handler, max_deliver), name=f"nats:{durable}:{subject}"
        )
        self._consumers.add(task)
        task.add_done_callback(self._consumers.discard)

    async def ping(self) -> None:
        """Round-trip to the server; BrokerUnavailableError when it does not answer."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise BrokerUnavailableError(f"not connected to NATS at {redact(self.url)}")
        try:
            await nc.flush(timeout=2)
        except Exception as exc:
            raise BrokerUnavailableError(f"NATS at {redact(self.url)}: {exc!r}") from exc

    async def consumer_lag(self) -> dict[tuple[str, str], int]:
        """Events in the stream not yet delivered to each (durable, subject) group this process
        joined (JetStream's ``num_pending``), read from the server now."""
        js = self._require()
        lag: dict[tuple[str, str], int] = {}
        for key, name in list(self._groups.items()):
            info = await js.consumer_info(self.stream, name)
            lag[key] = int(info.num_pending or 0)
        return lag

    async def close(self) -> None:
        """Stop fetching and close the connection; idempotent.

        Events being handled at that moment are not acknowledged, so JetStream hands them to
        another member of their group after ``ack_wait``.
        """
        await cancel_and_wait(list(self._consumers))
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            # Every publish already waited for its acknowledgement and close() writes out
            # pending acks, so there is nothing for a drain to wait for.
            await nc.close()

    async def destroy(self) -> None:
        """Delete this prefix's stream and its consumers, with every stored event (tests)."""
        js = self._require()
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(self.stream)

    async def _ensure_stream(self, js: Any) -> None:
        subjects = [f"{self.prefix}.>"]
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(
                api.StreamConfig(
                    name=self.stream,
                    subjects=subjects,
                    storage=api.StorageType.FILE,
                    retention=api.RetentionPolicy.LIMITS,
                    max_age=self._max_age,
                )
            )
            return
        # Two prefixes can sanitise to one stream name; refuse rather than mix their events.
        if subjects[0] not in (info.config.subjects or []):
            raise ValueError(
                f"stream {self.stream} exists for subjects {info.config.subjects}, "
                f"not {subjects}; choose another prefix"
            )

    async def _consume(self, sub: Any, durable: str, handler: Handler, max_deliver: int) -> None:
        failing = False
        while True:
            try:
                # One at a time: nats-py's batched fetch waits for a full batch (or the
                # expiry) once nothing is queued, which would delay events that trickle in.
                messages = await sub.fetch(1, timeout=self._fetch_timeout)
            except TimeoutError:
                continue
            except Exception:
                # Disconnected or reconnecting: say so once, then retry quietly.
                if not failing:
                    log.warning("fetch for %s failed; retrying", durable, exc_info=True)
                failing = True
                await asyncio.sleep(1.0)
                continue
            if failing:
                log.info("fetch for %s recovered", durable)
                failing = False
            for msg in messages:
                await self._handle(msg, durable, handler, max_deliver)

    async def _handle(self, msg: Any, durable: str, handler: Handler, max_deliver: int) -> None:
        attempt: int = msg.metadata.num_delivered
        self.delivered += 1
        if attempt > 1:
            self.redelivered += 1
        try:
            event = Event.from_json(msg.data)
        except Exception:
            self.dead_lettered += 1
            log.exception("dead-letter: undecodable message on %s for %s", msg.subject, durable)
            await self._settle(msg.term())
            return
        # The handler's log lines carry the request that caused the event.
        context = request_id_var.set(event.request_id)
        try:
            with consume_span(event, "nats", durable, attempt):
                await handler(event)
        except Exception:
            if attempt >= max_deliver:
                self.dead_lettered += 1
                log.exception(
                    "dead-letter: dropping event %s (%s) for %s after %d attempts",
                    event.id,
                    event.type,
                    durable,
                    attempt,
                )
                await self._settle(msg.term())
                return
            delay = redelivery_delay(attempt, base=self._retry_base, cap=self._retry_cap)
            log.exception(
                "handler %s failed on event %s (%s), attempt %d/%d; redelivering in %.2fs",
                durable,
                event.id,
                event.type,
                attempt,
                max_deliver,
                delay,
            )
            await self._settle(msg.nak(delay=delay))
        else:
            await self._settle(msg.ack())
        finally:
            request_id_var.reset(context)

    @staticmethod
    async def _settle(reply: Any) -> None:
        # A lost ack/nak is harmless: JetStream redelivers after ack_wait and consumers are
        # idempotent. It must not kill the fetch loop.
        try:
            await reply
        except Exception:
            log.warning("could not acknowledge a message; it will be redelivered", exc_info=True)

    def _require(self) -> Any:
        if self._js is None:
            raise RuntimeError("the NATS broker is not started; call start() first")
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None:
            return  # still starting: start() raises one clear error instead
        log.warning("nats %s: %r", redact(self.url), exc)

    async def _on_disconnected(self) -> None:
        if self._nc is None:
            return  # starting or closing: a disconnection then is ours, not news
        log.warning("disconnected from NATS at %s; reconnecting", redact(self.url))

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", redact(self.url))


__all__ = ["BrokerUnavailableError", "NatsBroker", "consumer_name", "stream_name"]
