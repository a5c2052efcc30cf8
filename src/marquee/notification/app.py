"""The notification service's app: its routes, database and background work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from marquee.catalog.client import CatalogClient
from marquee.identity.client import IdentityClient
from marquee.notification import repository
from marquee.notification.api import router
from marquee.notification.config import NotificationConfig
from marquee.notification.domain import NOTIFIED_SUBJECTS, DeliveryStatus
from marquee.notification.mailers import open_mailer
from marquee.notification.rendering import Renderer
from marquee.notification.service import DeliveryWorker, Notifier
from marquee.notification.sms import open_sms
from marquee.platform.app import create_service_app
from marquee.platform.broker import Event, Handler
from marquee.platform.kernel import Kernel, StartupError
from marquee.platform.metrics import (
    NOTIFICATION_DELIVERIES_FAILED,
    NOTIFICATIONS_FAILED,
    NOTIFICATIONS_RETRIED,
    NOTIFICATIONS_SENT,
    Sample,
    add_metric_source,
)

MIGRATIONS = Path(__file__).parent / "migrations"
DURABLE = "notification"
# Recording an event only fails while the database is down; keep redelivering it for long
# enough (the broker's backoff is capped at seconds) to ride out an outage.
MAX_DELIVER = 1000

log = logging.getLogger("marquee.notification")


def _catalog(kernel: Kernel) -> CatalogClient | None:
    """Catalog, for venues' time zones; without its address, times are in the configured zone
    (MARQUEE_NOTIFICATION_TIMEZONE)."""
    try:
        return CatalogClient(kernel.transport("catalog"))
    except StartupError:
        log.warning("No Catalog address: email times are in the configured time zone")
        return None


def create_app(kernel: Kernel, *, config: NotificationConfig | None = None) -> FastAPI:
    """The notification service. ``config`` defaults to the one read from the kernel's
    settings; tests pass their own (short retry delays, an SMTP server of their own)."""
    cfg = config or NotificationConfig.from_settings(kernel.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            mailer = open_mailer(cfg.mailer_url, data_dir=cfg.data_dir)
        except ValueError as exc:
            raise StartupError(f"MARQUEE_MAILER_URL: {exc}") from None
        try:
            sms = open_sms(cfg.sms_url, data_dir=cfg.data_dir)
        except ValueError as exc:
            raise StartupError(f"MARQUEE_SMS_URL: {exc}") from None
        notifier = Notifier(
            app.state.engine,
            renderer=Renderer(
                mail_from=cfg.mail_from, public_url=cfg.public_url, timezone=cfg.timezone
            ),
            identity=IdentityClient(kernel.transport("identity")),
            catalog=_catalog(kernel),
            mailer=mailer,
            sms=sms,
            config=cfg,
        )
        worker = DeliveryWorker(notifier, poll_interval=cfg.poll_interval_seconds)
        app.state.notifier = notifier
        app.state.delivery_worker = worker

        async def delivery_metrics() -> list[Sample]:
            _, failed = await repository.list_deliveries(
                notifier.engine, status=DeliveryStatus.FAILED, offset=0, limit=0
            )
            return [
                NOTIFICATIONS_SENT.sample(notifier.sent),
                NOTIFICATIONS_RETRIED.sample(notifier.retried),
                NOTIFICATIONS_FAILED.sample(notifier.failed),
                NOTIFICATION_DELIVERIES_FAILED.sample(failed),
            ]

        add_metric_source(app, "notification.deliveries", delivery_metrics)
        accepting = True

        async def on_order_event(event: Event) -> None:
            if not accepting:
                # Shutting down: refuse, so the broker redelivers (to another instance).
                raise RuntimeError("the notification service is stopping")
            if await notifier.record(event):
                worker.wake()

        handler: Handler = on_order_event
        worker.start()
        try:
            for subject in NOTIFIED_SUBJECTS:
                await kernel.broker.subscribe(
                    subject, durable=DURABLE, handler=handler, max_deliver=MAX_DELIVER
                )
            log.info("Notifications: email via %s, SMS via %s", mailer.describe(), sms.describe())
            yield
        finally:
            accepting = False
            await worker.stop()

    return create_service_app(
        "notification", kernel, routers=[router], migrations=MIGRATIONS, lifespan=lifespan
    )
