"""Booking's use cases: place, pay, cancel, expire, complete and refund orders; check tickets in.

Each use case loads what it needs, asks the pure domain what may happen, changes the database
in one short transaction (with its outbox events), and only then talks to the outside world
again; a step that fails after another service or the payment provider has acted is
compensated (a hold released, a charge refunded) or left for a sweeper to retry.

The hot path, ``place_order``, turns buyers away from a sold-out area with one atomic counter
operation (``avail:{session}:{area}`` in the shared cache) before it touches Identity, Catalog
or the database. The counter only keeps crowds away: Catalog's conditional reservation is what
decides, and the counter is corrected from it whenever they disagree.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from marquee.booking import domain
from marquee.booking import repository as repo
from marquee.booking.domain import (
    Action,
    BookingError,
    CheckInResult,
    InsufficientInventory,
    InvalidTransition,
    NotOnSale,
    Offer,
    Order,
    OrderId,
    OrderStatus,
    PaymentWindowClosed,
    RefundRequest,
    RefundRequestId,
    RefundStatus,
    StatusChanged,
    Ticket,
    TicketId,
    TicketStatus,
    UserId,
)
from marquee.booking.events import (
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_REFUNDED,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
    TicketIssued,
)
from marquee.booking.models import outbox
from marquee.booking.payments import (
    Charge,
    PaymentError,
    PaymentMethod,
    PaymentProvider,
    PaymentRejected,
    PaymentTimeout,
    PaymentUnavailable,
)
from marquee.booking.seatlock import SeatLock
from marquee.booking.tickets import ForgedTicket, TicketClaims, TicketSigner, qr_png
from marquee.catalog.client import Availability, CatalogClient, HoldRequest, Reservation
from marquee.identity.client import IdentityClient
from marquee.platform.auth import Principal
from marquee.platform.broker import Event
from marquee.platform.broker.outbox import OutboxRelay, add_to_outbox
from marquee.platform.cache import Cache, LockTimeout, locked
from marquee.platform.db import is_postgres
from marquee.platform.transport import ServiceError, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("marquee.booking")

Clock = Callable[[], datetime]


async def _ready(value: Offer) -> Offer:
    return value


K = TypeVar("K")
V = TypeVar("V")


async def _single_flight(
    flights: dict[K, asyncio.Future[V]], key: K, make: Callable[[], Awaitable[V]]
) -> V:
    """``make()``'s result, with one call in flight per key: callers arriving meanwhile wait
    for that call instead of making their own. One waiter giving up (cancelled) does not
    cancel the call the others wait for."""
    flight = flights.get(key)
    if flight is None:
        flight = asyncio.ensure_future(make())
        flights[key] = flight
        flight.add_done_callback(lambda _: flights.pop(key, None))
    return await asyncio.shield(flight)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def availability_key(session_id: str, area_id: str) -> str:
    """The shared counter of seats Booking believes are left in one area."""
    return f"avail:{session_id}:{area_id}"


def seat_lock_key(session_id: str, area_id: str) -> str:
    return f"seat_lock:{session_id}:{area_id}"


def fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell a retried request from a different one."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


# -- errors the use cases raise (besides the domain's) -------------------------------------


class OrderNotFound(BookingError):
    """No such order, or not the caller's (the two are indistinguishable on purpose)."""


class TicketNotFound(BookingError):
    pass


class SignInRequired(BookingError):
    """A ticket image asked for without a valid signed link or a signed-in owner."""


class RefundRequestNotFound(BookingError):
    pass


class RefundAlreadyRequested(BookingError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} already has an open refund request")
        self.order_id = order_id


class UnknownSeatArea(BookingError):
    def __init__(self, session_id: str, area_id: str) -> None:
        super().__init__(f"no seat area {area_id!r} in session {session_id!r}")
        self.session_id = session_id
        self.area_id = area_id


class UnknownBuyer(BookingError):
    """The token is valid but Identity does not know the account (deleted or disabled)."""


class IdempotencyKeyReused(BookingError):
    """The Idempotency-Key was already used with a different request body."""


class SeatsBusy(BookingError):
    """The area's seat lock stayed taken for the whole bounded wait."""


class PaymentInProgress(BookingError):
    """Another payment of the same order is still running."""


class PaymentDeclined(BookingError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"the payment was declined ({reason})")
        self.reason = reason


class PaymentTimedOut(BookingError):
    """The provider did not answer in time; retrying is safe (it never charges twice)."""


class PaymentProviderUnavailable(BookingError):
    pass


class DependencyUnavailable(BookingError):
    def __init__(self, service: str, detail: str = "") -> None:
        super().__init__(f"the {service} service is unavailable{': ' + detail if detail else ''}")
        self.service = service


# -- commands and results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    session_id: str
    area_id: str
    quantity: int

    def fingerprint(self) -> str:
        return fingerprint(
            {"session_id": self.session_id, "seat_area_id": self.area_id, "quantity": self.quantity}
        )


@dataclass(frozen=True, slots=True)
class PayOrder:
    method: PaymentMethod
    token: str

    def fingerprint(self) -> str:
        return fingerprint({"payment_method": self.method, "payment_token": self.token})


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    created: bool  # False when an Idempotency-Key replay returned an existing order


@dataclass(frozen=True, slots=True)
class OrderDetails:
    order: Order
    tickets: list[Ticket]
    history: list[StatusChanged]
    refund_requests: list[RefundRequest]


@dataclass(frozen=True, slots=True)
class PaidOrder:
    order: Order
    tickets: list[Ticket]


@dataclass(frozen=True, slots=True)
class RefundDecision:
    request: RefundRequest
    order: Order
    carried_out: bool  # False: approved, but a step failed and a sweeper will finish it


@dataclass(frozen=True, slots=True)
class CheckIn:
    result: CheckInResult
    ticket: Ticket | None
    checked_in_at: datetime | None
    order: Order | None = None


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int = 0
    completed: int = 0
    released: int = 0
    payments_settled: int = 0
    refunds_finished: int = 0


class Booking:
    """The booking service's use cases, wired to its database, cache, clients and provider."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        cache: Cache,
        identity: IdentityClient,
        catalog: CatalogClient,
        provider: PaymentProvider,
        signer: TicketSigner,
        relay: OutboxRelay,
        payment_window: timedelta,
        clock: Clock = utc_now,
        lock_ttl: float = 10.0,
        lock_wait: float = 3.0,
        payment_timeout: float = 15.0,
        sweep_batch: int = 100,
        terms_max_age: float = 1.0,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.identity = identity
        self.catalog = catalog
        self.provider = provider
        self.signer = signer
        self.relay = relay
        self.payment_window = payment_window
        self.clock = clock
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self.payment_timeout = payment_timeout
        self.sweep_batch = sweep_batch
        self._locking = is_postgres(engine)
        # Areas whose counters this instance has used; the reconciler corrects them.
        self.seen_areas: set[tuple[str, str]] = set()
        self._seeding: dict[str, asyncio.Future[Offer]] = {}
        self.terms_max_age = terms_max_age
        self._offers: dict[tuple[str, str], tuple[float, Offer]] = {}
        self._offer_flights: dict[tuple[str, str], asyncio.Future[Offer]] = {}
        self.seat_lock: SeatLock[HoldRequest, Reservation] = SeatLock(
            cache,
            ttl=lock_ttl,
            wait=lock_wait,
            run_batch=self._reserve_batch,
            undo=self._undo_hold,
        )

    # == placing an order (the hot path) ====================================================

    async def place_order(
        self, buyer: Principal, cmd: PlaceOrder, *, idempotency_key: str | None = None
    ) -> Placed:
        """Hold seats and create a pending order, or refuse; see the module docstring."""
        log.info("CreateOrder started user=%s", buyer.user_id)
        request_hash = cmd.fingerprint()
        if idempotency_key is not None:
            replay = await self._replay_order(buyer.user_id, idempotency_key, request_hash)
            if replay is not None:
                return Placed(replay, created=False)
        offer = await self._take_from_counter(cmd)
        try:
            return await self._place_counted(buyer, cmd, offer, idempotency_key, request_hash)
        except InsufficientInventory as exc:
            # Catalog says fewer seats are left than the counter did: the database wins.
            await self._set_counter(cmd.session_id, cmd.area_id, exc.available)
            raise
        except BaseException:
            await self._give_back_to_counter(cmd.session_id, cmd.area_id, cmd.quantity)
            raise

    async def _replay_order(self, user_id: str, key: str, request_hash: str) -> Order | None:
        async with self.engine.connect() as conn:
            keyed = await repo.order_by_idempotency_key(conn, user_id, key)
        if keyed is None:
            return None
        if keyed.request_hash != request_hash:
            raise IdempotencyKeyReused(key)
        return keyed.order

    async def _take_from_counter(self, cmd: PlaceOrder) -> Offer | None:
        """Take the seats from the area's counter or refuse at once; seed a missing counter
        from Catalog (returning the offer then, so it is not asked twice)."""
        key = availability_key(cmd.session_id, cmd.area_id)
        offer = None
        try:
            taken = await self.cache.counter_take(key, cmd.quantity)
            if taken.remaining is None:
                offer = await self._seed_counter(key, cmd.session_id, cmd.area_id)
                taken = await self.cache.counter_take(key, cmd.quantity)
        except BookingError:
            raise
        except Exception as exc:
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from None
        self.seen_areas.add((cmd.session_id, cmd.area_id))
        if not taken.taken:
            raise InsufficientInventory(taken.remaining or 0, cmd.quantity)
        return offer

    async def _seed_counter(self, key: str, session_id: str, area_id: str) -> Offer:
        """Create a missing counter from Catalog's availability, once per area per process:
        when a rush opens, every buyer finds the counter missing, and all but the first wait
        for that first answer instead of each asking Catalog."""
        return await _single_flight(
            self._seeding, key, lambda: self._seed(key, session_id, area_id)
        )

    async def _seed(self, key: str, session_id: str, area_id: str) -> Offer:
        offer = await self._offer(session_id, area_id)
        # Only if still absent: another instance may have seeded and started taking.
        await self.cache.set(key, b"%d" % offer.available, only_if_absent=True)
        return offer

    async def _place_counted(
        self,
        buyer: Principal,
        cmd: PlaceOrder,
        offer: Offer | None,
        idempotency_key: str | None,
        request_hash: str,
    ) -> Placed:
        # Three independent look-ups at once; the buyer's own problem is reported first.
        verified, terms, already = await asyncio.gather(
            self._verify_buyer(buyer.user_id),
            self._terms(cmd.session_id, cmd.area_id) if offer is None else _ready(offer),
            self._quota_used(buyer.user_id, cmd.session_id),
            return_exceptions=True,
        )
        for outcome in (verified, terms, already):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(terms, Offer)
        assert isinstance(already, int)
        offer = terms
        # The seats themselves were taken from the counter and Catalog's hold decides them.
        domain.check_terms(offer, cmd.quantity, already)

        order_id = OrderId(new_id())
        now = self.clock()
        expires_at = now + self.payment_window
        reserved = False
        try:
            reservation = await self._reserve(order_id, cmd, expires_at)
            reserved = True
            priced = _with_price(offer, reservation.unit_price, reservation.currency)
            order, changes = domain.place(
                order_id,
                UserId(buyer.user_id),
                priced,
                cmd.quantity,
                now=now,
                expires_at=expires_at,
            )
            try:
                async with self.engine.begin() as conn:
                    total = await repo.take_quota(
                        conn, buyer.user_id, cmd.session_id, cmd.quantity, offer.per_user_limit
                    )
                    if total is None:
                        raise domain.PerUserLimitExceeded(
                            offer.per_user_limit,
                            await repo.quota_used(conn, buyer.user_id, cmd.session_id),
                            cmd.quantity,
                        )
                    await repo.insert_order(
                        conn,
                        order,
                        changes,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash if idempotency_key else None,
                    )
                    await add_to_outbox(conn, outbox, self._created_event(order))
            except IntegrityError:
                if idempotency_key is None:
                    raise
                # A concurrent request with the same key committed first: answer with its
                # order (after releasing this request's own hold, below).
                replay = await self._replay_order(buyer.user_id, idempotency_key, request_hash)
                if replay is None:
                    raise
                await self._release_hold(order_id)
                reserved = False
                await self._give_back_to_counter(cmd.session_id, cmd.area_id, cmd.quantity)
                return Placed(replay, created=False)
        except BaseException:
            if reserved:
                await self._release_hold(order_id)
            raise
        self.relay.wake()
        return Placed(order, created=True)

    async def _verify_buyer(self, user_id: str) -> None:
        try:
            await self.identity.get_profile(user_id)
        except ServiceError as exc:
            if exc.status == 404:
                raise UnknownBuyer(user_id) from None
            raise DependencyUnavailable("identity", str(exc)) from None
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            raise DependencyUnavailable("identity", str(exc)) from None

    async def _quota_used(self, user_id: str, session_id: str) -> int:
        async with self.engine.connect() as conn:
            return await repo.quota_used(conn, user_id, session_id)

    async def _terms(self, session_id: str, area_id: str) -> Offer:
        """The area's offer, as Catalog gave it at most ``terms_max_age`` seconds ago (one
        request to Catalog per area at a time, however many buyers wait for it).

        Its terms (on sale, price shown, per-buyer limit) may be that old; its ``available``
        is not used: the counter and Catalog's hold decide the seats, and Catalog's hold
        also refuses an area taken off sale since and sets the price charged.
        """
        key = (session_id, area_id)
        kept = self._offers.get(key)
        now = time.monotonic()
        if kept is not None and now - kept[0] < self.terms_max_age:
            return kept[1]
        offer = await _single_flight(
            self._offer_flights, key, lambda: self._offer(session_id, area_id)
        )
        if len(self._offers) >= 1024:
            self._offers.clear()
        self._offers[key] = (now, offer)
        return offer

    async def _offer(self, session_id: str, area_id: str) -> Offer:
        try:
            availability = await self.catalog.check_availability(session_id, area_id)
        except ServiceError as exc:
            if exc.status == 404:
                raise UnknownSeatArea(session_id, area_id) from None
            raise DependencyUnavailable("catalog", str(exc)) from None
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            raise DependencyUnavailable("catalog", str(exc)) from None
        return _offer_of(availability)

    async def _reserve(
        self, order_id: OrderId, cmd: PlaceOrder, expires_at: datetime
    ) -> Reservation:
        """Reserve through Catalog under the area's seat lock (see ``seatlock``)."""
        lock_key = seat_lock_key(cmd.session_id, cmd.area_id)
        hold = HoldRequest(order_id, cmd.session_id, cmd.area_id, cmd.quantity, expires_at)
        try:
            return await self.seat_lock.run(lock_key, hold)
        except LockTimeout:
            raise SeatsBusy(lock_key) from None
        except ServiceError as exc:
            if exc.code == "insufficient_inventory":
                available = _int_field(exc.body, "available")
                raise InsufficientInventory(available, cmd.quantity) from None
            if exc.code == "not_on_sale":
                raise NotOnSale(str(exc)) from None
            if exc.status == 404:
                raise UnknownSeatArea(cmd.session_id, cmd.area_id) from None
            if exc.status < 500:
                raise
            await self._release_hold(order_id)
            raise DependencyUnavailable("catalog", str(exc)) from None
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            # The hold may have been made before the answer was lost: undo it, idempotently.
            await self._release_hold(order_id)
            raise DependencyUnavailable("catalog", str(exc)) from None

    async def _reserve_batch(self, holds: list[HoldRequest]) -> list[Reservation | Exception]:
        """One Catalog call for a batch of holds; each answer as ``catalog.reserve`` would
        have given it (a hold, or the ServiceError carrying its problem)."""
        answers = await self.catalog.reserve_many(holds)
        return [
            answer.reservation
            if answer.reservation is not None and answer.status < 300
            else ServiceError("catalog", answer.status, answer.problem)
            for answer in answers
        ]

    async def _undo_hold(self, hold: HoldRequest, _: Reservation) -> None:
        await self._release_hold(hold.reservation_id)

    async def _release_hold(self, order_id: str) -> bool:
        """Compensation: give a hold back to Catalog. Never raises; a hold that cannot be
        released now lapses at its expiry anyway (Catalog's cleanup returns it)."""
        try:
            await self.catalog.release(order_id)
            return True
        except ServiceError as exc:
            if exc.status == 404:
                return True  # never made
            log.warning("Releasing hold %s failed: %s", order_id, exc)
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            log.warning("Releasing hold %s failed: %s", order_id, exc)
        return False

    async def _give_back_to_counter(self, session_id: str, area_id: str, quantity: int) -> None:
        """Return seats to the area's counter, if it exists (a missing one is seeded afresh
        from Catalog on next use; creating it here would start it at ``quantity``)."""
        key = availability_key(session_id, area_id)
        try:
            if await self.cache.counter_get(key) is not None:
                await self.cache.counter_add(key, quantity)
        except Exception:
            # The counter only steers traffic; the reconciler corrects it.
            log.warning("Could not give %d seats back to %s", quantity, key, exc_info=True)

    async def _set_counter(self, session_id: str, area_id: str, available: int) -> None:
        try:
            await self.cache.counter_set(availability_key(session_id, area_id), available)
        except Exception:
            log.warning("Could not correct the counter of %s/%s", session_id, area_id)

    async def reconcile_counters(self) -> int:
        """Set every counter this instance has used to Catalog's availability (the database
        always wins); returns how many were checked."""
        checked = 0
        for session_id, area_id in list(self.seen_areas):
            try:
                offer = await self._offer(session_id, area_id)
            except UnknownSeatArea:
                self.seen_areas.discard((session_id, area_id))
                continue
            await self.cache.counter_set(availability_key(session_id, area_id), offer.available)
            checked += 1
        return checked

    # == reading orders =====================================================================

    async def order_details(self, viewer: Principal, order_id: str) -> OrderDetails:
        async with self.engine.connect() as conn:
            order = await repo.get_order(conn, order_id)
            if order is None or not _may_see(viewer, order):
                raise OrderNotFound(order_id)
            return OrderDetails(
                order=order,
                tickets=await repo.tickets_of(conn, order_id),
                history=await repo.transitions_of(conn, order_id),
                refund_requests=await repo.refund_requests_of(conn, order_id),
            )

    async def list_orders(
        self,
        *,
        user_id: str | None,
        status: OrderStatus | None = None,
        page: int,
        page_size: int,
    ) -> tuple[list[Order], int]:
        async with self.engine.connect() as conn:
            return await repo.list_orders(
                conn,
                user_id=user_id,
                status=status,
                offset=(page - 1) * page_size,
                limit=page_size,
            )

    async def _owned(self, viewer: Principal, order_id: str) -> Order:
        async with self.engine.connect() as conn:
            order = await repo.get_order(conn, order_id)
        if order is None or order.user_id != viewer.user_id:
            raise OrderNotFound(order_id)
        return order

    async def _load(self, order_id: str) -> Order:
        async with self.engine.connect() as conn:
            order = await repo.get_order(conn, order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return order

    # == cancelling and expiring ============================================================

    async def cancel_order(self, buyer: Principal, order_id: str) -> Order:
        """The buyer cancels a pending order; its seats go back to stock."""
        order = await self._owned(buyer, order_id)
        cancelled, changes = domain.cancel(order, self.clock())
        if not await self._save_end_of_hold(order, cancelled, changes):
            current = await self._load(order_id)
            raise InvalidTransition(order_id, current.status, Action.CANCEL)
        await self.return_seats(cancelled)
        return cancelled

    async def expire_order(self, order: Order) -> Order | None:
        """Cancel one pending order whose window has elapsed; None if it was not due or
        something else (a payment, a cancellation, another sweeper) changed it first."""
        try:
            expired, changes = domain.expire(order, self.clock())
        except (InvalidTransition, domain.NotDueYet):
            return None
        if not await self._save_end_of_hold(order, expired, changes):
            return None
        await self.return_seats(expired)
        return expired

    async def _save_end_of_hold(
        self,
        before: Order,
        after: Order,
        changes: Sequence[StatusChanged],
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Commit a pending → cancelled change with its event and the buyer's quota back."""
        if conn is not None:
            return await self._apply_end_of_hold(conn, before, after, changes)
        async with self.engine.begin() as own:
            done = await self._apply_end_of_hold(own, before, after, changes)
        if done:
            self.relay.wake()
        return done

    async def _apply_end_of_hold(
        self,
        conn: AsyncConnection,
        before: Order,
        after: Order,
        changes: Sequence[StatusChanged],
    ) -> bool:
        if not await repo.transition(conn, before, after, changes):
            return False
        await repo.give_back_quota(conn, after.user_id, after.session_id, after.quantity)
        await add_to_outbox(conn, outbox, self._cancelled_event(after))
        return True

    async def return_seats(self, order: Order) -> bool:
        """Release the order's reservation in Catalog and give the seats back to the counter,
        once. False (to be retried by the sweeper) when Catalog cannot be reached."""
        if not await self._release_hold(order.id):
            return False
        async with self.engine.begin() as conn:
            first = await repo.mark_released(conn, order.id, self.clock())
        if first:
            await self._give_back_to_counter(order.session_id, order.area_id, order.quantity)
        return True

    # == paying =============================================================================

    async def pay_order(
        self, buyer: Principal, order_id: str, cmd: PayOrder, *, idempotency_key: str | None
    ) -> PaidOrder:
        """Charge the buyer, confirm the seats, mark the order paid and issue its tickets.

        Paying is serialised per order by a lock; the provider's idempotency key is the order
        id, so no retry and no race can charge twice, and a charge that loses to the expiry
        (or to a cancellation) is refunded.
        """
        order = await self._owned(buyer, order_id)
        request_hash = cmd.fingerprint()
        replay = await self._replay_payment(order, idempotency_key, request_hash)
        if replay is not None:
            return replay
        await self._check_payable(order)
        try:
            async with locked(
                self.cache,
                f"pay_lock:{order.id}",
                ttl=self.payment_timeout + 30,
                wait=self.payment_timeout + 5,
            ):
                return await self._pay_locked(buyer, order.id, cmd, idempotency_key, request_hash)
        except LockTimeout:
            raise PaymentInProgress(order.id) from None

    async def _replay_payment(
        self, order: Order, idempotency_key: str | None, request_hash: str
    ) -> PaidOrder | None:
        if idempotency_key is None:
            return None
        async with self.engine.connect() as conn:
            prior = await repo.payment_by_idempotency_key(conn, order.id, idempotency_key)
            if prior is None:
                return None
            if prior.request_hash != request_hash:
                raise IdempotencyKeyReused(idempotency_key)
            if prior.reference is not None and prior.reference == order.payment_reference:
                return PaidOrder(order, await repo.tickets_of(conn, order.id))
        return None

    async def _check_payable(self, order: Order) -> None:
        """Raise unless payable now; an order found past its window is expired on the spot."""
        try:
            domain.check_payable(order, self.clock())
        except PaymentWindowClosed:
            await self.expire_order(order)
            current = await self._load(order.id)
            raise InvalidTransition(order.id, current.status, Action.PAY) from None

    async def _pay_locked(
        self,
        buyer: Principal,
        order_id: str,
        cmd: PayOrder,
        idempotency_key: str | None,
        request_hash: str,
    ) -> PaidOrder:
        order = await self._load(order_id)  # it may have changed while we waited
        replay = await self._replay_payment(order, idempotency_key, request_hash)
        if replay is not None:
            return replay
        await self._check_payable(order)
        now = self.clock()
        payment = repo.Payment(
            id=new_id(),
            order_id=order.id,
            user_id=buyer.user_id,
            charge_key=order.id,
            idempotency_key=idempotency_key,
            request_hash=request_hash if idempotency_key else None,
            method=cmd.method,
            amount=order.total_amount,
            currency=order.currency,
            status="started",
            reference=None,
            refund_reference=None,
            created_at=now,
            updated_at=now,
        )
        async with self.engine.begin() as conn:
            await repo.insert_payment(conn, payment)
        charge = await self._charge(order, payment, cmd)

        try:
            await self.catalog.confirm(order.id)
        except ServiceError as exc:
            if exc.status >= 500:
                raise DependencyUnavailable("catalog", str(exc)) from None
            # The hold is gone (expired or released): the order cannot be paid any more.
            await self._refund_lost_charge(payment, charge)
            await self.expire_order(order)
            current = await self._load(order.id)
            raise InvalidTransition(order.id, current.status, Action.PAY) from None
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            # The charge stays approved; a retry finds it (same key) and confirms again
            # (idempotent). Never retried, the order expires and the charge is refunded.
            raise DependencyUnavailable("catalog", str(exc)) from None

        now = self.clock()
        assert charge.reference is not None
        try:
            paid, changes = domain.pay(order, now, method=cmd.method, reference=charge.reference)
        except PaymentWindowClosed:
            await self._refund_lost_charge(payment, charge)
            await self.expire_order(order)
            current = await self._load(order.id)
            raise InvalidTransition(order.id, current.status, Action.PAY) from None
        issued = self._issue_tickets(paid, now)
        async with self.engine.begin() as conn:
            won = await repo.transition(conn, order, paid, changes)
            if won:
                await repo.insert_tickets(conn, issued)
                await add_to_outbox(conn, outbox, self._paid_event(paid, issued))
        if not won:
            current = await self._load(order.id)
            if current.status is OrderStatus.PAID and current.payment_reference == charge.reference:
                async with self.engine.connect() as conn:
                    return PaidOrder(current, await repo.tickets_of(conn, order.id))
            # Lost the race (expiry or cancellation committed first): money back.
            await self._refund_lost_charge(payment, charge)
            raise InvalidTransition(order.id, current.status, Action.PAY)
        self.relay.wake()
        return PaidOrder(paid, issued)

    async def _charge(self, order: Order, payment: repo.Payment, cmd: PayOrder) -> Charge:
        try:
            async with asyncio.timeout(self.payment_timeout):
                charge = await self.provider.charge(
                    order.id, order.total_amount, order.currency, cmd.method, cmd.token
                )
        except (PaymentTimeout, TimeoutError):
            await self._set_payment(payment.id, "unknown", failure="provider timeout")
            raise PaymentTimedOut(order.id) from None
        except PaymentUnavailable as exc:
            await self._set_payment(payment.id, "void", failure=str(exc))
            raise PaymentProviderUnavailable(str(exc)) from None
        except PaymentRejected as exc:
            await self._set_payment(payment.id, "declined", failure=str(exc))
            raise PaymentDeclined(str(exc)) from None
        if not charge.approved or charge.reference is None:
            reason = charge.reason or "declined"
            await self._set_payment(payment.id, "declined", failure=reason)
            raise PaymentDeclined(reason)
        await self._set_payment(payment.id, "approved", reference=charge.reference)
        return charge

    async def _set_payment(
        self,
        payment_id: str,
        status: str,
        *,
        reference: str | None = None,
        failure: str | None = None,
        refund_reference: str | None = None,
    ) -> None:
        async with self.engine.begin() as conn:
            await repo.update_payment(
                conn,
                payment_id,
                status=status,
                at=self.clock(),
                reference=reference,
                failure=failure,
                refund_reference=refund_reference,
            )

    async def _refund_lost_charge(self, payment: repo.Payment, charge: Charge) -> None:
        """Refund a charge whose order could not be paid; left for the sweeper if the
        provider cannot be reached now."""
        assert charge.reference is not None
        try:
            refund = await self.provider.refund(charge.reference, charge.amount)
        except PaymentError as exc:
            log.warning("Refunding lost charge %s failed: %s", charge.reference, exc)
            return
        async with self.engine.begin() as conn:
            await repo.mark_charge_refunded(conn, charge.reference, refund.reference, self.clock())
        log.info(
            "Refunded charge %s of order %s (lost the race)", charge.reference, payment.order_id
        )

    def _issue_tickets(self, order: Order, now: datetime) -> list[Ticket]:
        issued = []
        for seat in range(1, order.quantity + 1):
            ticket_id = TicketId(new_id())
            claims = TicketClaims(
                ticket_id=ticket_id,
                order_id=order.id,
                session_id=order.session_id,
                area_id=order.area_id,
                seat_number=seat,
                issued_at=int(now.timestamp()),
            )
            issued.append(
                Ticket(
                    id=ticket_id,
                    order_id=order.id,
                    user_id=order.user_id,
                    session_id=order.session_id,
                    area_id=order.area_id,
                    seat_number=seat,
                    status=TicketStatus.VALID,
                    payload=self.signer.sign(claims),
                    issued_at=now,
                )
            )
        return issued

    # == tickets ============================================================================

    async def ticket_qr_png(
        self, ticket_id: str, *, signature: str | None, viewer: Principal | None
    ) -> bytes:
        """The ticket's QR code as a PNG, for a valid signed link or its signed-in owner."""
        async with self.engine.connect() as conn:
            ticket = await repo.get_ticket(conn, ticket_id)
        linked = signature is not None and self.signer.link_is_valid(ticket_id, signature)
        if ticket is None:
            if linked or viewer is not None:
                raise TicketNotFound(ticket_id)
            raise SignInRequired(ticket_id)
        if not linked:
            if viewer is None:
                raise SignInRequired(ticket_id)
            if viewer.user_id != ticket.user_id and not viewer.is_admin:
                raise TicketNotFound(ticket_id)
        if ticket.status is TicketStatus.VOID:
            raise domain.TicketVoid(ticket_id)
        return qr_png(ticket.payload)

    async def check_in(self, staff: Principal, payload: str) -> CheckIn:
        """A scanned payload at the gate: valid (now used), already used, forged or refunded."""
        try:
            claims = self.signer.verify(payload)
        except ForgedTicket:
            return CheckIn(CheckInResult.FORGED, None, None)
        async with self.engine.connect() as conn:
            ticket = await repo.get_ticket(conn, claims.ticket_id)
        if ticket is None or ticket.order_id != claims.order_id:
            return CheckIn(CheckInResult.FORGED, None, None)
        result = domain.check_in(ticket)
        if result is CheckInResult.VALID:
            now = self.clock()
            async with self.engine.begin() as conn:
                first = await repo.check_in_ticket(conn, ticket.id, now, staff.user_id)
            if first:
                return CheckIn(CheckInResult.VALID, ticket, now)
            async with self.engine.connect() as conn:
                ticket = await repo.get_ticket(conn, claims.ticket_id)
            assert ticket is not None
            result = domain.check_in(ticket)
        return CheckIn(result, ticket, ticket.checked_in_at)

    # == refunds ============================================================================

    async def request_refund(
        self, buyer: Principal, order_id: str, reason: str | None
    ) -> RefundRequest:
        order = await self._owned(buyer, order_id)
        starts_at = None
        if order.status is OrderStatus.PAID:
            # The session may have been moved since the order was placed: ask Catalog.
            try:
                starts_at = (await self._offer(order.session_id, order.area_id)).session_starts_at
            except UnknownSeatArea:
                starts_at = None
        request = domain.request_refund(
            order,
            RefundRequestId(new_id()),
            now=self.clock(),
            reason=reason,
            session_starts_at=starts_at,
        )
        try:
            async with self.engine.begin() as conn:
                await repo.insert_refund_request(conn, request)
        except IntegrityError:
            raise RefundAlreadyRequested(order_id) from None
        return request

    async def list_refund_requests(
        self, *, status: RefundStatus | None, page: int, page_size: int
    ) -> tuple[list[RefundRequest], int]:
        async with self.engine.connect() as conn:
            return await repo.list_refund_requests(
                conn, status=status, offset=(page - 1) * page_size, limit=page_size
            )

    async def approve_refund(
        self, admin: Principal, request_id: str, *, refund_used_tickets: bool = False
    ) -> RefundDecision:
        """Approve a pending request and carry it out: money back through the provider,
        tickets void, seats back in stock, order refunded. Approving an approved request
        that could not be finished retries the rest; a finished one is answered as is.
        An order with a ticket already used at the gate is refused (TicketsAlreadyUsed)
        unless ``refund_used_tickets``."""
        request = await self._refund_request(request_id)
        if request.status is RefundStatus.PENDING:
            order = await self._load(request.order_id)
            if order.status is not OrderStatus.PAID:
                raise InvalidTransition(order.id, order.status, Action.REFUND)
            if not refund_used_tickets:
                async with self.engine.connect() as conn:
                    domain.check_no_ticket_used(order.id, await repo.tickets_of(conn, order.id))
            approved = domain.approve_refund(request, now=self.clock(), admin_id=admin.user_id)
            async with self.engine.begin() as conn:
                decided = await repo.decide_refund_request(conn, request, approved)
                if decided:
                    # Void at once: from the decision on, the gate turns these tickets away.
                    await repo.void_tickets(conn, order.id, self.clock())
            request = approved if decided else await self._refund_request(request_id)
            if request.status is not RefundStatus.APPROVED:
                raise domain.InvalidRefundTransition(request.id, request.status, "approved")
        elif request.status is not RefundStatus.APPROVED:
            raise domain.InvalidRefundTransition(request.id, request.status, "approved")
        try:
            return await self.carry_out_refund(request)
        except (DependencyUnavailable, PaymentError) as exc:
            log.warning("Refund %s approved but not finished yet: %s", request.id, exc)
            return RefundDecision(request, await self._load(request.order_id), False)

    async def reject_refund(
        self, admin: Principal, request_id: str, note: str | None
    ) -> RefundRequest:
        request = await self._refund_request(request_id)
        rejected = domain.reject_refund(
            request, now=self.clock(), admin_id=admin.user_id, note=note
        )
        async with self.engine.begin() as conn:
            decided = await repo.decide_refund_request(conn, request, rejected)
        if not decided:
            current = await self._refund_request(request_id)
            raise domain.InvalidRefundTransition(current.id, current.status, "rejected")
        return rejected

    async def _refund_request(self, request_id: str) -> RefundRequest:
        async with self.engine.connect() as conn:
            request = await repo.get_refund_request(conn, request_id)
        if request is None:
            raise RefundRequestNotFound(request_id)
        return request

    async def carry_out_refund(self, request: RefundRequest) -> RefundDecision:
        """Finish an approved request; every step is idempotent, so running it again after a
        failure (or concurrently) completes it exactly once."""
        order = await self._load(request.order_id)
        if order.status is OrderStatus.REFUNDED:
            return RefundDecision(await self._refund_request(request.id), order, True)
        if order.status is not OrderStatus.PAID or order.payment_reference is None:
            raise InvalidTransition(order.id, order.status, Action.REFUND)
        refund = await self.provider.refund(order.payment_reference, order.total_amount)
        try:
            await self.catalog.release(order.id)
        except ServiceError as exc:
            if exc.status != 404:
                raise DependencyUnavailable("catalog", str(exc)) from None
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            raise DependencyUnavailable("catalog", str(exc)) from None
        now = self.clock()
        refunded, changes = domain.refund(order, now)
        async with self.engine.begin() as conn:
            won = await repo.transition(conn, order, refunded, changes, inventory_released_at=now)
            if won:
                await repo.void_tickets(conn, order.id, now)
                await repo.give_back_quota(conn, order.user_id, order.session_id, order.quantity)
                await repo.complete_refund_request(conn, request.id, now, refund.reference)
                await repo.mark_charge_refunded(
                    conn, order.payment_reference, refund.reference, now
                )
                await add_to_outbox(conn, outbox, self._refunded_event(refunded))
        if won:
            self.relay.wake()
            await self._give_back_to_counter(order.session_id, order.area_id, order.quantity)
        return RefundDecision(
            await self._refund_request(request.id), await self._load(order.id), True
        )

    # == sweepers ===========================================================================

    async def sweep(self) -> SweepReport:
        """One pass of every timer: expire unpaid orders, complete finished ones, retry seat
        releases, settle stray payments and finish approved refunds. Safe to run on several
        instances at once; each step is idempotent."""
        return SweepReport(
            expired=await self._guarded(self.expire_due),
            completed=await self._guarded(self.complete_due),
            released=await self._guarded(self.release_pending),
            payments_settled=await self._guarded(self.settle_payments),
            refunds_finished=await self._guarded(self.finish_refunds),
        )

    async def _guarded(self, step: Callable[[], Any]) -> int:
        try:
            done: int = await step()
            return done
        except Exception:
            log.exception("Sweeper step %s failed; it runs again next pass", step.__name__)
            return 0

    async def expire_due(self) -> int:
        """Cancel pending orders whose payment window has elapsed; their seats go back."""
        expired = await self._sweep_due(
            OrderStatus.PENDING_PAYMENT, "expires_at", self.clock(), domain.expire
        )
        for order in expired:
            await self.return_seats(order)
        return len(expired)

    async def complete_due(self) -> int:
        """Complete paid orders seven days after their session ended."""
        now = self.clock()
        done = await self._sweep_due(
            OrderStatus.PAID, "session_ends_at", now - domain.COMPLETION_DELAY, domain.complete
        )
        return len(done)

    async def _sweep_due(
        self,
        status: OrderStatus,
        due_column: str,
        before: datetime,
        change: Callable[[Order, datetime], tuple[Order, list[StatusChanged]]],
    ) -> list[Order]:
        now = self.clock()
        changed: list[Order] = []
        if self._locking:
            # PostgreSQL: claim a batch with SKIP LOCKED so instances split the work.
            async with self.engine.begin() as conn:
                due = await repo.due_orders(
                    conn,
                    status=status,
                    due_column=due_column,
                    before=before,
                    limit=self.sweep_batch,
                    lock=True,
                )
                for order in due:
                    after = await self._apply_timed(conn, order, now, change)
                    if after is not None:
                        changed.append(after)
        else:
            async with self.engine.connect() as conn:
                due = await repo.due_orders(
                    conn,
                    status=status,
                    due_column=due_column,
                    before=before,
                    limit=self.sweep_batch,
                    lock=False,
                )
            for order in due:
                async with self.engine.begin() as conn:
                    after = await self._apply_timed(conn, order, now, change)
                if after is not None:
                    changed.append(after)
        if changed:
            self.relay.wake()
        return changed

    async def _apply_timed(
        self,
        conn: AsyncConnection,
        order: Order,
        now: datetime,
        change: Callable[[Order, datetime], tuple[Order, list[StatusChanged]]],
    ) -> Order | None:
        try:
            after, changes = change(order, now)
        except (InvalidTransition, domain.NotDueYet):
            return None
        if after.status is OrderStatus.CANCELLED:
            done = await self._apply_end_of_hold(conn, order, after, changes)
        else:
            done = await repo.transition(conn, order, after, changes)
            if done:
                await add_to_outbox(conn, outbox, self._completed_event(after))
        return after if done else None

    async def release_pending(self) -> int:
        """Retry returning seats of cancelled or refunded orders whose release failed."""
        grace = self.clock() - timedelta(seconds=5)
        async with self.engine.connect() as conn:
            pending = await repo.unreleased_orders(conn, before=grace, limit=self.sweep_batch)
        released = 0
        for order in pending:
            if await self.return_seats(order):
                released += 1
        return released

    async def settle_payments(self) -> int:
        """Refund money taken for orders that will never be paid by it: charges that lost a
        race, or whose outcome was never learnt (a timeout, a crash) before the order ended."""
        quiet = self.clock() - timedelta(seconds=2 * self.payment_timeout + 30)
        async with self.engine.connect() as conn:
            stray = await repo.unsettled_payments(conn, before=quiet, limit=self.sweep_batch)
        settled = 0
        for payment in stray:
            try:
                await self._settle_payment(payment)
            except PaymentError as exc:
                log.warning("Settling payment %s failed; retrying later: %s", payment.id, exc)
                continue
            settled += 1
        return settled

    async def _settle_payment(self, payment: repo.Payment) -> None:
        order = await self._load(payment.order_id)
        reference = payment.reference
        if reference is None:
            charge = await self.provider.lookup(payment.charge_key)
            reference = None if charge is None else charge.reference
        if reference is None or reference == order.payment_reference:
            # Nothing was taken, or it is the charge the order was paid with (a retry with
            # the same key found it): nothing to give back.
            await self._settle(payment.id, "void", only_from=(payment.status,))
            return
        refund = await self.provider.refund(reference, payment.amount)
        async with self.engine.begin() as conn:
            await repo.mark_charge_refunded(conn, reference, refund.reference, self.clock())
            await repo.update_payment(
                conn,
                payment.id,
                status="refunded",
                at=self.clock(),
                reference=reference,
                refund_reference=refund.reference,
            )

    async def _settle(self, payment_id: str, status: str, *, only_from: Sequence[str]) -> None:
        async with self.engine.begin() as conn:
            await repo.update_payment(
                conn, payment_id, status=status, at=self.clock(), only_from=only_from
            )

    async def finish_refunds(self) -> int:
        """Carry out approved refunds whose first attempt failed part-way."""
        grace = self.clock() - timedelta(seconds=10)
        async with self.engine.connect() as conn:
            unfinished = await repo.unfinished_refunds(conn, before=grace, limit=self.sweep_batch)
        finished = 0
        for request in unfinished:
            try:
                await self.carry_out_refund(request)
            except (DependencyUnavailable, PaymentError, InvalidTransition) as exc:
                log.warning("Refund %s still not carried out: %s", request.id, exc)
                continue
            finished += 1
        return finished

    # == events =============================================================================

    def _summary(self, order: Order) -> dict[str, Any]:
        return {
            "order_id": order.id,
            "user_id": order.user_id,
            "show_id": order.show_id,
            "show_title": order.show_title,
            "venue": order.venue,
            "session_id": order.session_id,
            "session_starts_at": order.session_starts_at,
            "area_id": order.area_id,
            "area_name": order.area_name,
            "quantity": order.quantity,
            "unit_price": order.unit_price,
            "total_amount": order.total_amount,
            "currency": order.currency,
        }

    def _created_event(self, order: Order) -> Event:
        payload = OrderCreated(**self._summary(order), expires_at=order.expires_at)
        return Event(type=ORDER_CREATED, data=payload.model_dump(mode="json"))

    def _paid_event(self, order: Order, issued: Sequence[Ticket]) -> Event:
        assert order.paid_at is not None
        assert order.payment_method is not None
        payload = OrderPaid(
            **self._summary(order),
            paid_at=order.paid_at,
            payment_method=order.payment_method,
            tickets=[
                TicketIssued(ticket_id=t.id, qr_payload=t.payload, qr_url=self.signer.qr_url(t.id))
                for t in issued
            ],
        )
        return Event(type=ORDER_PAID, data=payload.model_dump(mode="json"))

    def _cancelled_event(self, order: Order) -> Event:
        assert order.cancelled_at is not None
        reason = "timeout" if order.cancel_reason == "timeout" else "user"
        payload = OrderCancelled(
            **self._summary(order), cancelled_at=order.cancelled_at, reason=reason
        )
        return Event(type=ORDER_CANCELLED, data=payload.model_dump(mode="json"))

    def _refunded_event(self, order: Order) -> Event:
        assert order.refunded_at is not None
        payload = OrderRefunded(
            **self._summary(order),
            refunded_at=order.refunded_at,
            refund_amount=order.total_amount,
        )
        return Event(type=ORDER_REFUNDED, data=payload.model_dump(mode="json"))

    def _completed_event(self, order: Order) -> Event:
        assert order.completed_at is not None
        payload = OrderCompleted(**self._summary(order), completed_at=order.completed_at)
        return Event(type=ORDER_COMPLETED, data=payload.model_dump(mode="json"))


def _may_see(viewer: Principal, order: Order) -> bool:
    return viewer.is_admin or viewer.user_id == order.user_id


def _offer_of(a: Availability) -> Offer:
    return Offer(
        session_id=a.session_id,
        area_id=a.area_id,
        show_id=a.show_id,
        show_title=a.show_title,
        venue=a.venue,
        area_name=a.area_name,
        session_starts_at=a.session_starts_at,
        session_ends_at=a.session_ends_at,
        on_sale=a.on_sale,
        unit_price=a.price,
        currency=a.currency,
        available=a.available,
        per_user_limit=a.per_user_limit,
    )


def _with_price(offer: Offer, unit_price: Decimal, currency: str) -> Offer:
    """The offer at the price Catalog held the seats at (it may have changed since asked)."""
    return replace(offer, unit_price=unit_price, currency=currency)


def _int_field(body: Any, name: str) -> int:
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
