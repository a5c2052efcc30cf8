"""The booking service's app: its routes, database and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from marquee.booking import api
from marquee.booking.domain import BookingError
from marquee.booking.models import ORDER_STATUSES, orders, outbox
from marquee.booking.payments import PaymentProvider, open_provider
from marquee.booking.service import Booking, Clock, utc_now
from marquee.booking.tickets import TicketSigner
from marquee.catalog.client import CatalogClient
from marquee.identity.client import IdentityClient
from marquee.platform.app import create_service_app
from marquee.platform.broker.outbox import OutboxRelay
from marquee.platform.kernel import Kernel, StartupError
from marquee.platform.metrics import orders_by_state_gauge, outbox_backlog_gauge

MIGRATIONS = Path(__file__).parent / "migrations"
SHUTDOWN_GRACE = 10.0  # seconds a sweeper pass may take to finish at shutdown
log = logging.getLogger("marquee.booking")


def create_app(
    kernel: Kernel,
    *,
    clock: Clock = utc_now,
    provider: PaymentProvider | None = None,
    sweep_interval: float = 5.0,
    reconcile_interval: float = 30.0,
    relay_poll_interval: float = 1.0,
    lock_wait: float = 3.0,
    payment_timeout: float = 15.0,
) -> FastAPI:
    """The booking app. Its lifespan wires the use cases to the database, the cache, Identity,
    Catalog and the payment provider (``settings.payment_provider``, default the sandbox,
    unless one is passed), and runs the outbox relay and the sweepers until shutdown.

    ``sweep_interval`` is how often unpaid orders are expired, paid ones completed and stray
    payments settled; ``reconcile_interval`` how often availability counters are corrected
    from Catalog. Tests shorten them.
    """
    settings = kernel.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            signer = TicketSigner.from_settings(settings)
            chosen = provider or open_provider(settings.payment_provider, kernel.cache)
        except ValueError as exc:
            raise StartupError(f"booking: {exc}") from None
        relay = OutboxRelay(
            app.state.engine, outbox, kernel.broker, poll_interval=relay_poll_interval
        )
        outbox_backlog_gauge(app, relay)
        booking = Booking(
            engine=app.state.engine,
            cache=kernel.cache,
            identity=IdentityClient(kernel.transport("identity")),
            catalog=CatalogClient(kernel.transport("catalog")),
            provider=chosen,
            signer=signer,
            relay=relay,
            payment_window=timedelta(seconds=settings.payment_window_seconds),
            clock=clock,
            lock_wait=lock_wait,
            payment_timeout=payment_timeout,
        )
        app.state.booking = booking
        relay.start()
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                _every(sweep_interval, booking.sweep, stop), name="booking-sweeper"
            ),
            asyncio.create_task(
                _every(reconcile_interval, booking.reconcile_counters, stop),
                name="booking-counter-reconciler",
            ),
        ]
        try:
            yield
        finally:
            stop.set()
            # Let a pass in progress finish rather than cut it off mid-transaction.
            _, unfinished = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await relay.stop()

    app = create_service_app(
        "booking", kernel, routers=[api.router], migrations=MIGRATIONS, lifespan=lifespan
    )
    app.add_exception_handler(BookingError, api.on_booking_error)
    orders_by_state_gauge(app, orders.c.status, ORDER_STATUSES)
    return app


async def _every(
    interval: float, job: Callable[[], Awaitable[object]], stop: asyncio.Event
) -> None:
    """Run ``job`` every ``interval`` seconds until ``stop`` is set; a failing run is logged
    and the next one happens on time."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        try:
            await job()
        except Exception:
            log.exception("Background job %s failed", getattr(job, "__name__", job))
