"""Use cases: record what an order event should send, send it once, list and retry deliveries.

At least once in, exactly once out. The broker handler only records deliveries (idempotent on
(event id, channel)) in one transaction and returns, so the event is acknowledged at once and
never lost, whatever the mail server is doing. The delivery worker claims due deliveries with
a conditional UPDATE, sends them, and marks them sent, or pending again with an exponential,
jittered backoff, or failed after the last attempt.

The one window left: a worker that dies after the mail server accepted a message and before
it marked the delivery sent. The delivery is sent again when its lease lapses, with the same
``Message-ID``, so a mail client can recognise it. Nothing closes that window short of the
mail server taking part in the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.catalog.client import CatalogClient
from marquee.identity.client import IdentityClient, Profile
from marquee.notification import repository
from marquee.notification.config import NotificationConfig
from marquee.notification.domain import (
    KIND_BY_SUBJECT,
    KIND_LABELS,
    Channel,
    Delivery,
    DeliveryError,
    DeliveryNotFoundError,
    DeliveryStatus,
    NotFailedError,
    OrderEvent,
    after_failure,
    mask_recipient,
    parse_payload,
)
from marquee.notification.mailers import Mailer
from marquee.notification.rendering import Envelope, Renderer, language_of
from marquee.notification.repository import ClaimedDelivery
from marquee.notification.sms import SmsSender
from marquee.platform.broker import Event
from marquee.platform.context import request_id_var
from marquee.platform.transport import ServiceError, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("marquee.notification")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Attempt:
    """What one attempt learned, kept even when it fails: the recipient it resolved."""

    recipient: str | None


class Notifier:
    """Records deliveries for order events and sends due ones through the mailer and SMS.

    ``sent``, ``retried`` and ``failed`` count outcomes since construction, for metrics.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        renderer: Renderer,
        identity: IdentityClient,
        catalog: CatalogClient | None = None,
        mailer: Mailer,
        sms: SmsSender,
        config: NotificationConfig,
        clock: Clock = utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.identity = identity
        self.catalog = catalog
        self.mailer = mailer
        self.sms = sms
        self.config = config
        self.clock = clock
        self.jitter = jitter
        self.sent = 0
        self.retried = 0
        self.failed = 0

    async def record(self, event: Event) -> bool:
        """Record the email ``event`` calls for; True if it was new (there is work to do).

        A redelivered or duplicated event changes nothing. An event this service does not
        notify about, or whose payload breaks Booking's contract, is logged and ignored:
        redelivering it could never make it valid.
        """
        kind = KIND_BY_SUBJECT.get(event.type)
        if kind is None:
            return False
        try:
            order = parse_payload(event.type, event.data)
        except ValueError as exc:
            log.error(
                "Ignoring event %s (%s): its payload is not valid: %s", event.id, event.type, exc
            )
            return False
        subject = self.renderer.subject(kind, order)
        now = self.clock()
        async with self.engine.begin() as conn:
            if not await repository.add_event(conn, event, now=now):
                log.info("Event %s (%s) already recorded; nothing to send", event.id, event.type)
                return False
            await repository.add_delivery(
                conn,
                event_id=event.id,
                channel=Channel.EMAIL,
                kind=kind,
                subject=subject,
                user_id=order.user_id,
                order_id=order.order_id,
                now=now,
            )
        log.info(
            "Queued %s email order=%s user=%s event=%s",
            KIND_LABELS[kind],
            order.order_id,
            order.user_id,
            event.id,
        )
        return True

    async def deliver_due(self) -> int:
        """Claim the deliveries due now (up to the batch size), send them, record how each
        went; how many were claimed. Safe to run in any number of processes at once."""
        now = self.clock()
        claimed = await repository.claim_due(
            self.engine,
            now=now,
            lease_until=now + timedelta(seconds=self.config.lease_seconds),
            limit=self.config.batch_size,
        )
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(item: ClaimedDelivery) -> None:
            async with gate:
                await self._deliver(item)

        results = await asyncio.gather(*(one(item) for item in claimed), return_exceptions=True)
        for item, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                # Recording the outcome failed (database down): the claim lapses and the
                # delivery is tried again then.
                log.error(
                    "Could not record the outcome of delivery %d: %r", item.delivery.id, result
                )
        return len(claimed)

    async def _deliver(self, item: ClaimedDelivery) -> None:
        delivery = item.delivery
        attempt = _Attempt(recipient=delivery.recipient)
        # The log lines of this delivery carry the request that caused the event.
        context = request_id_var.set(item.request_id)
        try:
            try:
                await self._send(item, attempt)
            except DeliveryError as exc:
                await self._unsent(item, attempt, str(exc), permanent=exc.permanent)
            except TimeoutError:
                await self._unsent(item, attempt, "sending timed out", permanent=False)
            except Exception as exc:
                log.exception("Unexpected error sending delivery %d", delivery.id)
                await self._unsent(item, attempt, f"{type(exc).__name__}: {exc}", permanent=False)
            else:
                await self._sent(item, attempt)
        finally:
            request_id_var.reset(context)

    async def _send(self, item: ClaimedDelivery, attempt: _Attempt) -> None:
        delivery = item.delivery
        try:
            order = parse_payload(item.event_type, item.payload)
        except ValueError as exc:
            raise DeliveryError(f"the event's payload is not valid: {exc}", permanent=True) from exc
        label = KIND_LABELS[delivery.kind]
        if delivery.channel is Channel.EMAIL:
            profile = await self._profile(delivery.user_id)
            attempt.recipient = profile.email
            if profile.phone:
                await self._add_sms(item, order, profile.phone)
            envelope = Envelope(
                item.delivery.event_id,
                item.request_id,
                profile.full_name,
                profile.email,
                language=language_of(profile.locale),
                timezone=await self._venue_zone(order),
            )
            try:
                message = self.renderer.email(delivery.kind, order, envelope, now=self.clock())
            except ValueError as exc:
                raise DeliveryError(f"cannot address the email: {exc}", permanent=True) from exc
            log.info(
                "Sending %s email order=%s to=%s",
                label,
                order.order_id,
                mask_recipient(Channel.EMAIL, profile.email),
            )
            async with self._send_deadline():
                await self.mailer.send(message)
        else:
            if not delivery.recipient:
                raise DeliveryError("no phone number to send to", permanent=True)
            envelope = Envelope(delivery.event_id, item.request_id, "", delivery.recipient)
            text = self.renderer.sms(delivery.kind, order, envelope)
            log.info(
                "Sending %s SMS order=%s to=%s",
                label,
                order.order_id,
                mask_recipient(Channel.SMS, delivery.recipient),
            )
            async with self._send_deadline():
                await self.sms.send(text)

    def _send_deadline(self) -> asyncio.Timeout:
        """Bounds a hand-over to the mail or SMS system well inside the lease, so no other
        worker takes the delivery while this one may still be sending it. Only the hand-over:
        cancelling a database call half-way could leave its connection in limbo."""
        return asyncio.timeout(self.config.lease_seconds / 3)

    async def _venue_zone(self, order: OrderEvent) -> str | None:
        """The venue's time zone, from Catalog; None (the configured zone) when it cannot say:
        a message with times in a named zone beats no message."""
        if self.catalog is None:
            return None
        try:
            return (await self.catalog.check_availability(order.session_id, order.area_id)).timezone
        except Exception as exc:
            log.warning("Venue time zone unknown for order=%s: %s", order.order_id, exc)
            return None

    async def _profile(self, user_id: str) -> Profile:
        try:
            return await self.identity.get_profile(user_id)
        except ServiceError as exc:
            # An unknown user stays unknown; anything else from Identity may pass.
            raise DeliveryError(f"Identity: {exc}", permanent=exc.status == 404) from exc
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            raise DeliveryError(f"Identity unreachable: {exc}") from exc
        except ValidationError as exc:
            raise DeliveryError(f"Identity's profile is not valid: {exc}") from exc

    async def _add_sms(self, item: ClaimedDelivery, order: OrderEvent, phone: str) -> None:
        """The SMS twin of an email, once the user's phone number is known (idempotent)."""
        delivery = item.delivery
        async with self.engine.begin() as conn:
            created = await repository.add_delivery(
                conn,
                event_id=delivery.event_id,
                channel=Channel.SMS,
                kind=delivery.kind,
                subject=delivery.subject,
                user_id=delivery.user_id,
                order_id=order.order_id,
                recipient=phone,
                now=self.clock(),
            )
        if created is not None:
            log.info(
                "Queued %s SMS order=%s event=%s",
                KIND_LABELS[delivery.kind],
                order.order_id,
                delivery.event_id,
            )

    async def _sent(self, item: ClaimedDelivery, attempt: _Attempt) -> None:
        delivery = item.delivery
        if await repository.mark_sent(
            self.engine, delivery.id, item.token, now=self.clock(), recipient=attempt.recipient
        ):
            self.sent += 1
            log.info(
                "Sent %s %s order=%s attempt=%d",
                KIND_LABELS[delivery.kind],
                delivery.channel.value,
                delivery.order_id,
                delivery.attempts,
            )
        else:
            log.warning(
                "Sent delivery %d, but its claim had lapsed; another worker may send it too",
                delivery.id,
            )

    async def _unsent(
        self, item: ClaimedDelivery, attempt: _Attempt, error: str, *, permanent: bool
    ) -> None:
        delivery = item.delivery
        now = self.clock()
        outcome = after_failure(
            attempts=delivery.attempts,
            max_attempts=self.config.max_attempts,
            permanent=permanent,
            now=now,
            base=self.config.retry_base_seconds,
            cap=self.config.retry_cap_seconds,
            jitter=self.jitter(),
        )
        recorded = await repository.mark_unsent(
            self.engine,
            delivery.id,
            item.token,
            status=outcome.status,
            next_attempt_at=outcome.next_attempt_at,
            error=error,
            recipient=attempt.recipient,
        )
        if not recorded:
            return
        what = f"{KIND_LABELS[delivery.kind]} {delivery.channel.value} order={delivery.order_id}"
        if outcome.status is DeliveryStatus.FAILED:
            self.failed += 1
            log.error(
                "Gave up on %s (delivery %d) after %d attempt(s): %s",
                what,
                delivery.id,
                delivery.attempts,
                error,
            )
        else:
            self.retried += 1
            delay = (outcome.next_attempt_at - now).total_seconds()
            log.warning(
                "Could not send %s (attempt %d/%d), retrying in %.1fs: %s",
                what,
                delivery.attempts,
                self.config.max_attempts,
                delay,
                error,
            )


class DeliveryWorker:
    """Runs ``Notifier.deliver_due`` until stopped: at start, on ``wake()``, and every
    ``poll_interval`` (which is also when retries that came due are picked up).

    Errors of a whole pass (database down) are logged and retried with a growing delay.
    """

    def __init__(
        self, notifier: Notifier, *, poll_interval: float, max_backoff: float = 30.0
    ) -> None:
        self.notifier = notifier
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="notification-delivery-worker")

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the deliveries in hand (up to ``grace`` seconds), then stop.

        A delivery cut off mid-send keeps its claim until the lease lapses, then is sent again.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=grace)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            # Cleared before the pass, so a wake() arriving during it causes another.
            self._wakeup.clear()
            try:
                while not self._stopping and await self.notifier.deliver_due() > 0:
                    pass  # more may be due, including SMS added by this pass
            except Exception:
                failures += 1
                ceiling = min(self.max_backoff, self.poll_interval * 2.0 ** min(failures, 16))
                delay = ceiling / 2 + random.uniform(0, ceiling / 2)
                log.exception(
                    "Delivery pass failed (%d in a row); retrying in %.1fs", failures, delay
                )
                await self._sleep(delay)
                continue
            if failures:
                log.info("Delivery worker recovered after %d failed passes", failures)
                failures = 0
            await self._sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[Delivery]
    page: int
    page_size: int
    total: int


async def notifications_of(
    engine: AsyncEngine, user_id: str, *, page: int, page_size: int
) -> DeliveryPage:
    """The user's own deliveries, newest first."""
    items, total = await repository.list_for_user(
        engine, user_id, offset=(page - 1) * page_size, limit=page_size
    )
    return DeliveryPage(items, page, page_size, total)


async def all_notifications(
    engine: AsyncEngine, *, status: DeliveryStatus | None, page: int, page_size: int
) -> DeliveryPage:
    """Every user's deliveries (optionally in one status), newest first."""
    items, total = await repository.list_deliveries(
        engine, status=status, offset=(page - 1) * page_size, limit=page_size
    )
    return DeliveryPage(items, page, page_size, total)


async def retry_delivery(engine: AsyncEngine, delivery_id: int, *, now: datetime) -> Delivery:
    """Send a failed delivery again, with a fresh attempt budget.

    Raises DeliveryNotFoundError, or NotFailedError when it is not failed (pending ones are
    being retried already; sent ones are never sent twice).
    """
    reset = await repository.reset_failed(engine, [delivery_id], now=now)
    found = await repository.get_delivery(engine, delivery_id)
    if found is None:
        raise DeliveryNotFoundError(delivery_id)
    if not reset:
        raise NotFailedError(delivery_id, found.status.value)
    return found


async def retry_all_failed(engine: AsyncEngine, *, now: datetime) -> list[int]:
    """Send every failed delivery again; the ids reset."""
    return await repository.reset_failed(engine, None, now=now)
