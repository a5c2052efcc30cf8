"""Booking's SQL: rows to domain objects and back, and the conditional updates that make every
state change safe under concurrency (several booking instances, sweepers and requests).

Every write transaction starts with a write: SQLite refuses to upgrade a read transaction once
another connection has committed, so the reads a decision needs happen before the transaction
and the write re-checks them (a compare-and-set on the status).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, and_, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from marquee.booking.domain import (
    Cause,
    Order,
    OrderId,
    OrderStatus,
    RefundRequest,
    RefundRequestId,
    RefundStatus,
    StatusChanged,
    Ticket,
    TicketId,
    TicketStatus,
    UserId,
)
from marquee.booking.models import (
    order_transitions,
    orders,
    payments,
    refund_requests,
    tickets,
    user_quotas,
)

# -- orders ---------------------------------------------------------------------------------


def order_from_row(row: Row[Any]) -> Order:
    m = row._mapping
    return Order(
        id=OrderId(m["id"]),
        user_id=UserId(m["user_id"]),
        session_id=m["session_id"],
        area_id=m["area_id"],
        show_id=m["show_id"],
        show_title=m["show_title"],
        venue=m["venue"],
        area_name=m["area_name"],
        session_starts_at=m["session_starts_at"],
        session_ends_at=m["session_ends_at"],
        quantity=m["quantity"],
        unit_price=m["unit_price"],
        total_amount=m["total_amount"],
        currency=m["currency"],
        status=OrderStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        expires_at=m["expires_at"],
        paid_at=m["paid_at"],
        cancelled_at=m["cancelled_at"],
        cancel_reason=m["cancel_reason"],
        refunded_at=m["refunded_at"],
        completed_at=m["completed_at"],
        payment_method=m["payment_method"],
        payment_reference=m["payment_reference"],
    )


def _order_values(order: Order) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "updated_at": order.updated_at,
        "paid_at": order.paid_at,
        "cancelled_at": order.cancelled_at,
        "cancel_reason": order.cancel_reason,
        "refunded_at": order.refunded_at,
        "completed_at": order.completed_at,
        "payment_method": order.payment_method,
        "payment_reference": order.payment_reference,
    }


async def insert_order(
    conn: AsyncConnection,
    order: Order,
    changes: Sequence[StatusChanged],
    *,
    idempotency_key: str | None,
    request_hash: str | None,
) -> None:
    """Insert a new order and its first transitions (raises IntegrityError on a reused key)."""
    await conn.execute(
        insert(orders).values(
            id=order.id,
            user_id=order.user_id,
            session_id=order.session_id,
            area_id=order.area_id,
            show_id=order.show_id,
            show_title=order.show_title,
            venue=order.venue,
            area_name=order.area_name,
            session_starts_at=order.session_starts_at,
            session_ends_at=order.session_ends_at,
            quantity=order.quantity,
            unit_price=order.unit_price,
            total_amount=order.total_amount,
            currency=order.currency,
            created_at=order.created_at,
            expires_at=order.expires_at,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            **_order_values(order),
        )
    )
    await record_transitions(conn, changes)


async def record_transitions(conn: AsyncConnection, changes: Sequence[StatusChanged]) -> None:
    if not changes:
        return
    await conn.execute(
        insert(order_transitions),
        [
            {
                "order_id": c.order_id,
                "from_status": None if c.from_status is None else c.from_status.value,
                "to_status": c.to_status.value,
                "at": c.at,
                "cause": c.cause.value,
            }
            for c in changes
        ],
    )


async def transition(
    conn: AsyncConnection,
    before: Order,
    after: Order,
    changes: Sequence[StatusChanged],
    *,
    inventory_released_at: datetime | None = None,
) -> bool:
    """Save ``after`` only if the stored order is still in ``before``'s status.

    The compare-and-set is what makes racing changes (payment against expiry, two sweepers)
    end with exactly one winner: the loser's update matches no row and it gets False.
    """
    values = _order_values(after)
    if inventory_released_at is not None:
        values["inventory_released_at"] = inventory_released_at
    result = await conn.execute(
        update(orders)
        .where(orders.c.id == before.id, orders.c.status == before.status.value)
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    await record_transitions(conn, changes)
    return True


async def get_order(conn: AsyncConnection, order_id: str) -> Order | None:
    row = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
    return None if row is None else order_from_row(row)


@dataclass(frozen=True, slots=True)
class KeyedOrder:
    order: Order
    request_hash: str | None


async def order_by_idempotency_key(
    conn: AsyncConnection, user_id: str, key: str
) -> KeyedOrder | None:
    query = select(orders).where(orders.c.user_id == user_id, orders.c.idempotency_key == key)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return KeyedOrder(order_from_row(row), row._mapping["request_hash"])


async def list_orders(
    conn: AsyncConnection,
    *,
    user_id: str | None,
    status: OrderStatus | None,
    offset: int,
    limit: int,
) -> tuple[list[Order], int]:
    """A page of orders, newest first, and how many match in all."""
    conditions = []
    if user_id is not None:
        conditions.append(orders.c.user_id == user_id)
    if status is not None:
        conditions.append(orders.c.status == status.value)
    where = and_(*conditions) if conditions else None
    query = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc())
    count = select(func.count()).select_from(orders)
    if where is not None:
        query = query.where(where)
        count = count.where(where)
    rows = (await conn.execute(query.offset(offset).limit(limit))).all()
    total = int((await conn.execute(count)).scalar_one())
    return [order_from_row(row) for row in rows], total


async def transitions_of(conn: AsyncConnection, order_id: str) -> list[StatusChanged]:
    query = (
        select(order_transitions)
        .where(order_transitions.c.order_id == order_id)
        .order_by(order_transitions.c.id)
    )
    return [
        StatusChanged(
            order_id=OrderId(r.order_id),
            from_status=None if r.from_status is None else OrderStatus(r.from_status),
            to_status=OrderStatus(r.to_status),
            at=r.at,
            cause=Cause(r.cause),
        )
        for r in (await conn.execute(query)).all()
    ]


async def due_orders(
    conn: AsyncConnection,
    *,
    status: OrderStatus,
    due_column: str,
    before: datetime,
    limit: int,
    lock: bool,
) -> list[Order]:
    """Orders in ``status`` whose ``due_column`` is at or before ``before``, oldest first.

    With ``lock`` (PostgreSQL) the rows are claimed ``FOR UPDATE SKIP LOCKED`` in the caller's
    transaction, so several instances' sweepers share the work instead of repeating it.
    """
    column = orders.c[due_column]
    query = (
        select(orders)
        .where(orders.c.status == status.value, column <= before)
        .order_by(column)
        .limit(limit)
    )
    if status is OrderStatus.PAID:
        # A refund being carried out keeps its order paid until done: never complete it.
        query = query.where(
            ~exists().where(
                refund_requests.c.order_id == orders.c.id,
                refund_requests.c.status == RefundStatus.APPROVED.value,
                refund_requests.c.completed_at.is_(None),
            )
        )
    if lock:
        query = query.with_for_update(skip_locked=True, of=orders)
    return [order_from_row(row) for row in (await conn.execute(query)).all()]


async def unreleased_orders(conn: AsyncConnection, *, before: datetime, limit: int) -> list[Order]:
    """Cancelled or refunded orders whose seats have not yet gone back to Catalog."""
    query = (
        select(orders)
        .where(
            orders.c.status.in_((OrderStatus.CANCELLED.value, OrderStatus.REFUNDED.value)),
            orders.c.inventory_released_at.is_(None),
            orders.c.updated_at <= before,
        )
        .order_by(orders.c.updated_at)
        .limit(limit)
    )
    return [order_from_row(row) for row in (await conn.execute(query)).all()]


async def mark_released(conn: AsyncConnection, order_id: str, at: datetime) -> bool:
    """Record that the order's seats are back in stock; True only for the first to record it."""
    result = await conn.execute(
        update(orders)
        .where(orders.c.id == order_id, orders.c.inventory_released_at.is_(None))
        .values(inventory_released_at=at)
    )
    return result.rowcount == 1


# -- per-buyer quotas ------------------------------------------------------------------------


async def quota_used(conn: AsyncConnection, user_id: str, session_id: str) -> int:
    query = select(user_quotas.c.quantity).where(
        user_quotas.c.user_id == user_id, user_quotas.c.session_id == session_id
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return int(value or 0)


async def take_quota(
    conn: AsyncConnection, user_id: str, session_id: str, quantity: int, limit: int
) -> int | None:
    """Add ``quantity`` to the buyer's seats for the session if the total stays within
    ``limit``; the new total, or None (nothing changed) when it would exceed it.

    One statement, atomic on both databases: concurrent orders by one buyer serialise on the
    row, so the limit holds exactly.
    """
    if quantity > limit:
        return None
    stmt: postgresql.Insert | sqlite.Insert
    values = {"user_id": user_id, "session_id": session_id, "quantity": quantity}
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(user_quotas).values(values)
    else:
        stmt = sqlite.insert(user_quotas).values(values)
    new_total = user_quotas.c.quantity + stmt.excluded.quantity
    stmt = stmt.on_conflict_do_update(
        index_elements=[user_quotas.c.user_id, user_quotas.c.session_id],
        set_={"quantity": new_total},
        where=new_total <= limit,
    )
    row = (await conn.execute(stmt.returning(user_quotas.c.quantity))).first()
    return None if row is None else int(row[0])


async def give_back_quota(
    conn: AsyncConnection, user_id: str, session_id: str, quantity: int
) -> None:
    await conn.execute(
        update(user_quotas)
        .where(
            user_quotas.c.user_id == user_id,
            user_quotas.c.session_id == session_id,
            user_quotas.c.quantity >= quantity,
        )
        .values(quantity=user_quotas.c.quantity - quantity)
    )


# -- payments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    order_id: str
    user_id: str
    charge_key: str
    idempotency_key: str | None
    request_hash: str | None
    method: str
    amount: Decimal
    currency: str
    status: str
    reference: str | None
    refund_reference: str | None
    created_at: datetime
    updated_at: datetime


def _payment_from_row(row: Row[Any]) -> Payment:
    m = row._mapping
    return Payment(
        id=m["id"],
        order_id=m["order_id"],
        user_id=m["user_id"],
        charge_key=m["charge_key"],
        idempotency_key=m["idempotency_key"],
        request_hash=m["request_hash"],
        method=m["method"],
        amount=m["amount"],
        currency=m["currency"],
        status=m["status"],
        reference=m["reference"],
        refund_reference=m["refund_reference"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


async def insert_payment(conn: AsyncConnection, payment: Payment) -> None:
    await conn.execute(
        insert(payments).values(
            id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            charge_key=payment.charge_key,
            idempotency_key=payment.idempotency_key,
            request_hash=payment.request_hash,
            method=payment.method,
            amount=payment.amount,
            currency=payment.currency,
            status=payment.status,
            reference=payment.reference,
            refund_reference=payment.refund_reference,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
        )
    )


async def update_payment(
    conn: AsyncConnection,
    payment_id: str,
    *,
    status: str,
    at: datetime,
    only_from: Sequence[str] | None = None,
    reference: str | None = None,
    refund_reference: str | None = None,
    failure: str | None = None,
) -> bool:
    values: dict[str, Any] = {"status": status, "updated_at": at}
    if reference is not None:
        values["reference"] = reference
    if refund_reference is not None:
        values["refund_reference"] = refund_reference
    if failure is not None:
        values["failure"] = failure[:300]
    query = update(payments).where(payments.c.id == payment_id)
    if only_from is not None:
        query = query.where(payments.c.status.in_(list(only_from)))
    result = await conn.execute(query.values(**values))
    return result.rowcount == 1


async def payment_by_idempotency_key(
    conn: AsyncConnection, order_id: str, key: str
) -> Payment | None:
    query = (
        select(payments)
        .where(payments.c.order_id == order_id, payments.c.idempotency_key == key)
        .order_by(payments.c.created_at)
    )
    rows = (await conn.execute(query)).all()
    # The approved attempt, if any, is the one the key's answer is about.
    found = [_payment_from_row(r) for r in rows]
    for payment in found:
        if payment.status in ("approved", "refunded"):
            return payment
    return found[0] if found else None


async def unsettled_payments(
    conn: AsyncConnection, *, before: datetime, limit: int
) -> list[Payment]:
    """Payments that may hold money for an order that will never be paid by them: started or
    unknown (the outcome was never learnt) or approved, on orders no longer pending, and not
    the payment the order was paid with."""
    query = (
        select(payments)
        .join(orders, orders.c.id == payments.c.order_id)
        .where(
            payments.c.status.in_(("started", "unknown", "approved")),
            payments.c.updated_at <= before,
            orders.c.status != OrderStatus.PENDING_PAYMENT.value,
            (orders.c.payment_reference.is_(None))
            | (payments.c.reference.is_(None))
            | (orders.c.payment_reference != payments.c.reference),
        )
        .order_by(payments.c.updated_at)
        .limit(limit)
    )
    return [_payment_from_row(row) for row in (await conn.execute(query)).all()]


# -- tickets --------------------------------------------------------------------------------


def _ticket_from_row(row: Row[Any]) -> Ticket:
    m = row._mapping
    return Ticket(
        id=TicketId(m["id"]),
        order_id=OrderId(m["order_id"]),
        user_id=UserId(m["user_id"]),
        session_id=m["session_id"],
        area_id=m["area_id"],
        seat_number=m["seat_number"],
        status=TicketStatus(m["status"]),
        payload=m["payload"],
        issued_at=m["issued_at"],
        checked_in_at=m["checked_in_at"],
    )


async def mark_charge_refunded(
    conn: AsyncConnection, reference: str, refund_reference: str, at: datetime
) -> None:
    """Every payment row of this provider charge is now refunded."""
    await conn.execute(
        update(payments)
        .where(payments.c.reference == reference, payments.c.status != "refunded")
        .values(status="refunded", refund_reference=refund_reference, updated_at=at)
    )


async def insert_tickets(conn: AsyncConnection, issued: Sequence[Ticket]) -> None:
    await conn.execute(
        insert(tickets),
        [
            {
                "id": t.id,
                "order_id": t.order_id,
                "user_id": t.user_id,
                "session_id": t.session_id,
                "area_id": t.area_id,
                "seat_number": t.seat_number,
                "status": t.status.value,
                "payload": t.payload,
                "issued_at": t.issued_at,
            }
            for t in issued
        ],
    )


async def tickets_of(conn: AsyncConnection, order_id: str) -> list[Ticket]:
    query = select(tickets).where(tickets.c.order_id == order_id).order_by(tickets.c.seat_number)
    return [_ticket_from_row(row) for row in (await conn.execute(query)).all()]


async def get_ticket(conn: AsyncConnection, ticket_id: str) -> Ticket | None:
    row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).first()
    return None if row is None else _ticket_from_row(row)


async def check_in_ticket(conn: AsyncConnection, ticket_id: str, at: datetime, by: str) -> bool:
    """Mark a valid, unused ticket used; False if it was used or voided meanwhile."""
    result = await conn.execute(
        update(tickets)
        .where(
            tickets.c.id == ticket_id,
            tickets.c.status == TicketStatus.VALID.value,
            tickets.c.checked_in_at.is_(None),
        )
        .values(checked_in_at=at, checked_in_by=by)
    )
    return result.rowcount == 1


async def void_tickets(conn: AsyncConnection, order_id: str, at: datetime) -> int:
    result = await conn.execute(
        update(tickets)
        .where(tickets.c.order_id == order_id, tickets.c.status == TicketStatus.VALID.value)
        .values(status=TicketStatus.VOID.value, voided_at=at)
    )
    return int(result.rowcount)


# -- refund requests ------------------------------------------------------------------------


def _refund_from_row(row: Row[Any]) -> RefundRequest:
    m = row._mapping
    return RefundRequest(
        id=RefundRequestId(m["id"]),
        order_id=OrderId(m["order_id"]),
        user_id=UserId(m["user_id"]),
        status=RefundStatus(m["status"]),
        reason=m["reason"],
        amount=m["amount"],
        currency=m["currency"],
        created_at=m["created_at"],
        decided_at=m["decided_at"],
        decided_by=m["decided_by"],
        note=m["note"],
        completed_at=m["completed_at"],
        refund_reference=m["refund_reference"],
    )


async def insert_refund_request(conn: AsyncConnection, request: RefundRequest) -> None:
    """Insert a pending request; IntegrityError if the order already has an open one."""
    await conn.execute(
        insert(refund_requests).values(
            id=request.id,
            order_id=request.order_id,
            user_id=request.user_id,
            status=request.status.value,
            reason=request.reason,
            amount=request.amount,
            currency=request.currency,
            created_at=request.created_at,
        )
    )


async def decide_refund_request(
    conn: AsyncConnection, before: RefundRequest, after: RefundRequest
) -> bool:
    """Save a decision only if the request is still in ``before``'s status."""
    result = await conn.execute(
        update(refund_requests)
        .where(
            refund_requests.c.id == before.id,
            refund_requests.c.status == before.status.value,
        )
        .values(
            status=after.status.value,
            decided_at=after.decided_at,
            decided_by=after.decided_by,
            note=after.note,
        )
    )
    return result.rowcount == 1


async def complete_refund_request(
    conn: AsyncConnection, request_id: str, at: datetime, refund_reference: str
) -> None:
    await conn.execute(
        update(refund_requests)
        .where(refund_requests.c.id == request_id, refund_requests.c.completed_at.is_(None))
        .values(completed_at=at, refund_reference=refund_reference)
    )


async def get_refund_request(conn: AsyncConnection, request_id: str) -> RefundRequest | None:
    query = select(refund_requests).where(refund_requests.c.id == request_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _refund_from_row(row)


async def refund_requests_of(conn: AsyncConnection, order_id: str) -> list[RefundRequest]:
    query = (
        select(refund_requests)
        .where(refund_requests.c.order_id == order_id)
        .order_by(refund_requests.c.created_at)
    )
    return [_refund_from_row(row) for row in (await conn.execute(query)).all()]


async def list_refund_requests(
    conn: AsyncConnection, *, status: RefundStatus | None, offset: int, limit: int
) -> tuple[list[RefundRequest], int]:
    query = select(refund_requests).order_by(
        refund_requests.c.created_at.desc(), refund_requests.c.id.desc()
    )
    count = select(func.count()).select_from(refund_requests)
    if status is not None:
        query = query.where(refund_requests.c.status == status.value)
        count = count.where(refund_requests.c.status == status.value)
    rows = (await conn.execute(query.offset(offset).limit(limit))).all()
    total = int((await conn.execute(count)).scalar_one())
    return [_refund_from_row(row) for row in rows], total


async def unfinished_refunds(
    conn: AsyncConnection, *, before: datetime, limit: int
) -> list[RefundRequest]:
    """Approved requests not yet carried out (a step failed), decided before ``before``."""
    query = (
        select(refund_requests)
        .where(
            refund_requests.c.status == RefundStatus.APPROVED.value,
            refund_requests.c.completed_at.is_(None),
            refund_requests.c.decided_at <= before,
        )
        .order_by(refund_requests.c.decided_at)
        .limit(limit)
    )
    return [_refund_from_row(row) for row in (await conn.execute(query)).all()]
