"""Booking's HTTP routes: parse, call one use case, render; errors map through ``PROBLEMS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from marquee.booking import domain
from marquee.booking import service as svc
from marquee.booking.domain import BookingError, OrderStatus, RefundStatus
from marquee.booking.schemas import (
    ApproveRefundIn,
    CheckInIn,
    CheckInOut,
    OrderDetailsOut,
    OrderOut,
    OrderPageOut,
    PaidOrderOut,
    PayIn,
    PlaceOrderIn,
    RefundDecisionOut,
    RefundRequestIn,
    RefundRequestOut,
    RefundRequestPageOut,
    RejectRefundIn,
    SigningKeyOut,
    TicketOut,
    TransitionOut,
    render,
)
from marquee.platform.auth import AdminUser, CurrentUser, Principal, authenticate, tokens_of
from marquee.platform.contract import errors
from marquee.platform.problems import Problem, problem_response

router = APIRouter()


async def booking_of(request: Request) -> svc.Booking:
    booking: svc.Booking = request.app.state.booking
    return booking


BookingDep = Annotated[svc.Booking, Depends(booking_of)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]
Page = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]
RETRY_SOON = {"Retry-After": "1"}


# -- the one table from booking errors to problem details ----------------------------------

PROBLEMS: dict[type[BookingError], Callable[[Any], Problem]] = {
    svc.OrderNotFound: lambda e: Problem(404, "order_not_found", "No such order."),
    svc.TicketNotFound: lambda e: Problem(404, "ticket_not_found", "No such ticket."),
    svc.SignInRequired: lambda e: Problem(
        401,
        "unauthorized",
        "Open the ticket's signed link, or sign in as its owner.",
        headers={"WWW-Authenticate": 'Bearer realm="marquee"'},
    ),
    svc.RefundRequestNotFound: lambda e: Problem(
        404, "refund_request_not_found", "No such refund request."
    ),
    svc.RefundAlreadyRequested: lambda e: Problem(
        409, "refund_already_requested", str(e), order_id=e.order_id
    ),
    svc.UnknownSeatArea: lambda e: Problem(
        404, "seat_area_not_found", str(e), session_id=e.session_id, seat_area_id=e.area_id
    ),
    svc.UnknownBuyer: lambda e: Problem(
        403, "account_not_found", "Your account no longer exists; sign in again."
    ),
    svc.IdempotencyKeyReused: lambda e: Problem(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used with a different request body; use a new key.",
    ),
    svc.SeatsBusy: lambda e: Problem(
        503, "busy", "Too many buyers for this area right now; retry shortly.", headers=RETRY_SOON
    ),
    svc.PaymentInProgress: lambda e: Problem(
        409,
        "payment_in_progress",
        "Another payment of this order is still running.",
        headers=RETRY_SOON,
    ),
    svc.PaymentDeclined: lambda e: Problem(
        402,
        "payment_declined",
        f"The payment was declined ({e.reason}); the order can still be paid.",
        reason=e.reason,
    ),
    svc.PaymentTimedOut: lambda e: Problem(
        504,
        "payment_timeout",
        "The payment provider did not answer in time. Retrying is safe: you are never "
        "charged twice.",
        headers=RETRY_SOON,
    ),
    svc.PaymentProviderUnavailable: lambda e: Problem(
        502,
        "payment_provider_unavailable",
        "The payment provider cannot be reached; nothing was charged. Retry shortly.",
        headers=RETRY_SOON,
    ),
    svc.DependencyUnavailable: lambda e: Problem(
        503,
        "service_unavailable",
        f"The {e.service} service is unavailable; retry shortly.",
        headers=RETRY_SOON,
        service=e.service,
    ),
    domain.InvalidTransition: lambda e: Problem(
        409,
        "invalid_state_transition",
        f"The order is {e.status.value}; it cannot {e.action.replace('_', ' ')}.",
        order_id=e.order_id,
        order_status=e.status.value,
        action=e.action,
    ),
    domain.InvalidRefundTransition: lambda e: Problem(
        409,
        "invalid_state_transition",
        f"The refund request is {e.status.value}; it cannot be {e.action}.",
        refund_request_id=e.request_id,
        refund_request_status=e.status.value,
    ),
    domain.NotDueYet: lambda e: Problem(409, "not_due", str(e), due_at=e.due_at.isoformat()),
    domain.InsufficientInventory: lambda e: Problem(
        409,
        "insufficient_inventory",
        f"Only {e.available} seat(s) left; {e.requested} requested.",
        available=e.available,
        requested=e.requested,
    ),
    domain.NotOnSale: lambda e: Problem(409, "not_on_sale", "These seats are not on sale now."),
    domain.QuantityOutOfRange: lambda e: Problem(
        422,
        "invalid_quantity",
        f"Order between 1 and {e.limit} tickets for this session.",
        limit=e.limit,
    ),
    domain.PerUserLimitExceeded: lambda e: Problem(
        409,
        "per_user_limit_exceeded",
        f"At most {e.limit} tickets per buyer for this session; you already have {e.already}.",
        limit=e.limit,
        already_ordered=e.already,
        requested=e.requested,
    ),
    domain.TicketsAlreadyUsed: lambda e: Problem(
        409,
        "tickets_used",
        f"{len(e.ticket_ids)} ticket(s) of this order were already used at the gate, and a "
        "refund would put their seats back on sale. To refund anyway, approve again with "
        '{"refund_used_tickets": true}.',
        order_id=e.order_id,
        ticket_ids=list(e.ticket_ids),
    ),
    domain.TicketVoid: lambda e: Problem(
        410, "ticket_void", "This ticket was voided (its order refunded) and admits no one."
    ),
    domain.RefundWindowClosed: lambda e: Problem(
        409,
        "refund_window_closed",
        "Refunds can only be requested before the session starts.",
        session_starts_at=e.starts_at.isoformat(),
    ),
}


def problem_for(exc: BookingError) -> Problem:
    """The problem an error maps to: its own class's entry, else its nearest base's."""
    for cls in type(exc).__mro__:
        make = PROBLEMS.get(cls)
        if make is not None:
            return make(exc)
    return Problem(400, "bad_request", str(exc))


async def on_booking_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BookingError)
    p = problem_for(exc)
    return problem_response(p.status, p.code, p.detail, headers=p.headers, **p.extra)


# -- orders ---------------------------------------------------------------------------------


@router.post(
    "/api/v1/orders",
    status_code=201,
    response_model=OrderOut,
    responses={
        200: {"model": OrderOut, "description": "The order this Idempotency-Key made before."},
        **errors(401, 403, 404, 409, 422, 503),
    },
)
async def place_order(
    request: Request,
    body: PlaceOrderIn,
    user: CurrentUser,
    booking: BookingDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Hold seats and create a pending order (the seed's scenario 1, step 4)."""
    cmd = svc.PlaceOrder(body.session_id, body.seat_area_id, body.quantity)
    try:
        placed = await booking.place_order(user, cmd, idempotency_key=idempotency_key)
    except domain.InsufficientInventory as exc:
        max_age = request.app.state.kernel.settings.sold_out_max_age_seconds
        if exc.available > 0 or idempotency_key is not None or max_age <= 0:
            raise
        # Sold out: the same answer awaits everyone who asks the same; the gateway may give it
        # without asking again for a moment (gateway/refusals.py).
        p = problem_for(exc)
        headers = {**p.headers, "Marquee-Refusal-Max-Age": f"{max_age:g}"}
        return problem_response(p.status, p.code, p.detail, headers=headers, **p.extra)
    if placed.created:
        return render(OrderOut.of(placed.order), 201)
    return render(OrderOut.of(placed.order), 200, {"Idempotent-Replayed": "true"})


@router.get("/api/v1/orders", response_model=OrderPageOut, responses=errors(401))
async def list_my_orders(
    user: CurrentUser, booking: BookingDep, page: Page = 1, page_size: PageSize = 20
) -> Response:
    found, total = await booking.list_orders(user_id=user.user_id, page=page, page_size=page_size)
    return render(
        OrderPageOut(
            orders=[OrderOut.of(o) for o in found], page=page, page_size=page_size, total=total
        )
    )


@router.get("/api/v1/orders/{order_id}", response_model=OrderDetailsOut, responses=errors(401, 404))
async def get_order(order_id: str, user: CurrentUser, booking: BookingDep) -> Response:
    details = await booking.order_details(user, order_id)
    return render(_details_out(booking, details))


@router.post(
    "/api/v1/orders/{order_id}/cancel", response_model=OrderOut, responses=errors(401, 404, 409)
)
async def cancel_order(order_id: str, user: CurrentUser, booking: BookingDep) -> Response:
    return render(OrderOut.of(await booking.cancel_order(user, order_id)))


@router.post(
    "/api/v1/orders/{order_id}/pay",
    response_model=PaidOrderOut,
    responses=errors(401, 402, 404, 409, 422, 502, 503, 504),
)
async def pay_order(
    order_id: str,
    body: PayIn,
    user: CurrentUser,
    booking: BookingDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Pay a pending order and get its e-tickets (the seed's scenario 1, step 5)."""
    cmd = svc.PayOrder(body.payment_method, body.payment_token)
    paid = await booking.pay_order(user, order_id, cmd, idempotency_key=idempotency_key)
    order = paid.order
    return render(
        PaidOrderOut(
            order_id=order.id,
            status=order.status.value,
            tickets=[TicketOut.of(t, booking.signer.qr_url(t.id)) for t in paid.tickets],
            total_amount=order.total_amount,
            currency=order.currency,
            paid_at=order.paid_at,
            payment_method=order.payment_method,
        )
    )


@router.post(
    "/api/v1/orders/{order_id}/refund-requests",
    status_code=201,
    response_model=RefundRequestOut,
    responses=errors(401, 404, 409),
)
async def request_refund(
    order_id: str,
    user: CurrentUser,
    booking: BookingDep,
    body: RefundRequestIn | None = None,
) -> Response:
    reason = body.reason if body is not None else None
    request = await booking.request_refund(user, order_id, reason)
    return render(RefundRequestOut.of(request), 201)


# -- tickets --------------------------------------------------------------------------------


@router.get("/api/v1/tickets/signing-key", response_model=SigningKeyOut)
async def signing_key(booking: BookingDep) -> Response:
    """The public key a gate scanner needs to verify ticket payloads offline."""
    return render(
        SigningKeyOut(
            public_key_pem=booking.signer.public_key_pem(),
            public_key=booking.signer.public_key_raw(),
        )
    )


@router.get(
    "/api/v1/tickets/{ticket_id}/qr.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The QR code, a PNG."},
        **errors(401, 404, 410),
    },
)
async def ticket_qr(
    ticket_id: str,
    request: Request,
    booking: BookingDep,
    sig: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The ticket's QR code as a PNG: for its signed link, or for its owner (Bearer)."""
    viewer: Principal | None = None
    authorization = request.headers.get("authorization")
    if authorization:
        viewer = authenticate(tokens_of(request), authorization)
    png = await booking.ticket_qr_png(ticket_id, signature=sig, viewer=viewer)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# -- admin ----------------------------------------------------------------------------------


@router.get("/api/v1/admin/orders", response_model=OrderPageOut, responses=errors(401, 403))
async def admin_list_orders(
    admin: AdminUser,
    booking: BookingDep,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    status: OrderStatus | None = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> Response:
    found, total = await booking.list_orders(
        user_id=user_id, status=status, page=page, page_size=page_size
    )
    return render(
        OrderPageOut(
            orders=[OrderOut.of(o) for o in found], page=page, page_size=page_size, total=total
        )
    )


@router.post("/api/v1/admin/checkins", response_model=CheckInOut, responses=errors(401, 403))
async def check_in(body: CheckInIn, admin: AdminUser, booking: BookingDep) -> Response:
    """A scanned QR payload at the gate: valid / already_used / forged / refunded."""
    outcome = await booking.check_in(admin, body.payload)
    ticket = outcome.ticket
    return render(
        CheckInOut(
            result=outcome.result.value,
            ticket_id=None if ticket is None else ticket.id,
            order_id=None if ticket is None else ticket.order_id,
            session_id=None if ticket is None else ticket.session_id,
            seat_area_id=None if ticket is None else ticket.area_id,
            seat_number=None if ticket is None else ticket.seat_number,
            checked_in_at=outcome.checked_in_at,
        )
    )


@router.get(
    "/api/v1/admin/refund-requests",
    response_model=RefundRequestPageOut,
    responses=errors(401, 403),
)
async def list_refund_requests(
    admin: AdminUser,
    booking: BookingDep,
    status: RefundStatus | None = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> Response:
    found, total = await booking.list_refund_requests(status=status, page=page, page_size=page_size)
    return render(
        RefundRequestPageOut(
            refund_requests=[RefundRequestOut.of(r) for r in found],
            page=page,
            page_size=page_size,
            total=total,
        )
    )


@router.post(
    "/api/v1/admin/refund-requests/{request_id}/approve",
    response_model=RefundDecisionOut,
    responses={
        202: {
            "model": RefundDecisionOut,
            "description": "Approved; a step failed and a sweeper is finishing the refund.",
        },
        **errors(401, 403, 404, 409),
    },
)
async def approve_refund(
    request_id: str,
    admin: AdminUser,
    booking: BookingDep,
    body: ApproveRefundIn | None = None,
) -> Response:
    """Approve and carry out a refund. 200 when done; 202 when approved but a step failed
    (the provider or Catalog unreachable) and a sweeper is finishing it. 409 `tickets_used`
    when a ticket of the order was already used at the gate, unless the body says
    `{"refund_used_tickets": true}`."""
    override = body is not None and body.refund_used_tickets
    decision = await booking.approve_refund(admin, request_id, refund_used_tickets=override)
    out = RefundDecisionOut(
        **RefundRequestOut.of(decision.request).model_dump(),
        order_status=decision.order.status.value,
        refund_completed=decision.carried_out,
    )
    return render(out, 200 if decision.carried_out else 202)


@router.post(
    "/api/v1/admin/refund-requests/{request_id}/reject",
    response_model=RefundRequestOut,
    responses=errors(401, 403, 404, 409),
)
async def reject_refund(
    request_id: str,
    admin: AdminUser,
    booking: BookingDep,
    body: RejectRefundIn | None = None,
) -> Response:
    note = body.note if body is not None else None
    return render(RefundRequestOut.of(await booking.reject_refund(admin, request_id, note)))


def _details_out(booking: svc.Booking, details: svc.OrderDetails) -> OrderDetailsOut:
    return OrderDetailsOut(
        **OrderOut.of(details.order).model_dump(),
        tickets=[TicketOut.of(t, booking.signer.qr_url(t.id)) for t in details.tickets],
        history=[TransitionOut.of(c) for c in details.history],
        refund_requests=[RefundRequestOut.of(r) for r in details.refund_requests],
    )
