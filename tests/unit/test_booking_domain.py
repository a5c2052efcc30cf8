"""The order state machine, purchase rules, refund requests and check-in, as pure functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from marquee.booking import domain
from marquee.booking.domain import (
    ALLOWED,
    TRANSITIONS,
    Action,
    Cause,
    CheckInResult,
    InsufficientInventory,
    InvalidRefundTransition,
    InvalidTransition,
    NotDueYet,
    NotOnSale,
    Offer,
    Order,
    OrderId,
    OrderStatus,
    PaymentWindowClosed,
    PerUserLimitExceeded,
    QuantityOutOfRange,
    RefundRequestId,
    RefundStatus,
    RefundWindowClosed,
    StatusChanged,
    Ticket,
    TicketId,
    TicketStatus,
    UserId,
)

S = OrderStatus
T0 = datetime(2026, 1, 14, 15, 15, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
SESSION_START = datetime(2026, 8, 15, 11, 30, tzinfo=UTC)
SESSION_END = SESSION_START + timedelta(hours=3)


def offer(**changes: object) -> Offer:
    base = Offer(
        session_id="session-001",
        area_id="vip-a",
        show_id="show-5678",
        show_title="周杰伦 2026 世界巡回演唱会",
        venue="上海体育场",
        area_name="VIP A区",
        session_starts_at=SESSION_START,
        session_ends_at=SESSION_END,
        on_sale=True,
        unit_price=Decimal("1280"),
        currency="CNY",
        available=45,
        per_user_limit=4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def new_order(quantity: int = 2, now: datetime = T0) -> Order:
    order, _ = domain.place(
        OrderId("order-9999"),
        UserId("uuid-1234"),
        offer(),
        quantity,
        now=now,
        expires_at=now + WINDOW,
    )
    return order


def in_status(status: OrderStatus) -> Order:
    """An order brought to ``status`` through the real transitions."""
    order = new_order()
    if status is S.CREATED:
        return replace(order, status=S.CREATED)
    if status is S.PENDING_PAYMENT:
        return order
    if status is S.CANCELLED:
        return domain.cancel(order, T0 + timedelta(minutes=1))[0]
    paid, _ = domain.pay(order, T0 + timedelta(minutes=1), method="alipay", reference="ch_1")
    if status is S.PAID:
        return paid
    if status is S.REFUNDED:
        return domain.refund(paid, T0 + timedelta(days=1))[0]
    return domain.complete(paid, SESSION_END + timedelta(days=7))[0]


# When each action is attempted: within the window, and late enough for the timed ones.
ACT_AT = {
    Action.AWAIT_PAYMENT: T0,
    Action.PAY: T0 + timedelta(minutes=5),
    Action.CANCEL: T0 + timedelta(minutes=5),
    Action.EXPIRE: T0 + WINDOW,
    Action.REFUND: T0 + timedelta(days=1),
    Action.COMPLETE: SESSION_END + timedelta(days=7),
}


def perform(order: Order, action: Action, now: datetime) -> tuple[Order, list[StatusChanged]]:
    actions: dict[Action, Callable[[], tuple[Order, list[StatusChanged]]]] = {
        Action.AWAIT_PAYMENT: lambda: domain._move(order, action, now, Cause.SEATS_HELD),
        Action.PAY: lambda: domain.pay(order, now, method="card", reference="ch_9"),
        Action.CANCEL: lambda: domain.cancel(order, now),
        Action.EXPIRE: lambda: domain.expire(order, now),
        Action.REFUND: lambda: domain.refund(order, now),
        Action.COMPLETE: lambda: domain.complete(order, now),
    }
    return actions[action]()


# -- the transition table -------------------------------------------------------------------


def test_the_transition_table_is_exactly_the_seeds_rules() -> None:
    edges = {(frm, to) for (frm, _), to in TRANSITIONS.items()}
    assert edges == {
        (S.CREATED, S.PENDING_PAYMENT),
        (S.PENDING_PAYMENT, S.PAID),
        (S.PENDING_PAYMENT, S.CANCELLED),
        (S.PAID, S.REFUNDED),
        (S.PAID, S.COMPLETED),
    }


def test_cancelled_refunded_and_completed_are_terminal() -> None:
    assert {S.CANCELLED, S.REFUNDED, S.COMPLETED} == domain.TERMINAL_STATUSES
    assert all(not ALLOWED[status] for status in domain.TERMINAL_STATUSES)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_action_in_every_status_follows_the_table(
    status: OrderStatus, action: Action
) -> None:
    order = in_status(status)
    now = ACT_AT[action]
    expected = TRANSITIONS.get((status, action))
    if expected is None:
        with pytest.raises(InvalidTransition) as raised:
            perform(order, action, now)
        assert raised.value.status is status
        assert raised.value.order_id == order.id
        return
    after, changes = perform(order, action, now)
    assert after.status is expected
    assert changes == [StatusChanged(order.id, status, expected, now, changes[0].cause)]
    assert domain.can_transition(status, expected)
    assert after.updated_at == now


def test_placing_an_order_records_created_then_pending_payment() -> None:
    order, changes = domain.place(
        OrderId("o1"), UserId("u1"), offer(), 2, now=T0, expires_at=T0 + WINDOW
    )
    assert order.status is S.PENDING_PAYMENT
    assert [(c.from_status, c.to_status, c.cause) for c in changes] == [
        (None, S.CREATED, Cause.PLACED),
        (S.CREATED, S.PENDING_PAYMENT, Cause.SEATS_HELD),
    ]
    assert order.total_amount == Decimal("2560")
    assert order.expires_at == T0 + WINDOW


def test_the_total_is_exact_for_fractional_prices() -> None:
    order, _ = domain.place(
        OrderId("o1"),
        UserId("u1"),
        offer(unit_price=Decimal("0.10")),
        3,
        now=T0,
        expires_at=T0 + WINDOW,
    )
    assert order.total_amount == Decimal("0.30")


def test_an_order_cannot_be_placed_with_a_window_that_already_ended() -> None:
    with pytest.raises(ValueError, match="payment window"):
        domain.place(OrderId("o"), UserId("u"), offer(), 1, now=T0, expires_at=T0)


# -- paying, cancelling, expiring -----------------------------------------------------------


def test_paying_records_the_method_reference_and_time() -> None:
    paid, changes = domain.pay(
        new_order(), T0 + timedelta(minutes=3), method="alipay", reference="r"
    )
    assert (paid.status, paid.payment_method, paid.payment_reference) == (S.PAID, "alipay", "r")
    assert paid.paid_at == T0 + timedelta(minutes=3)
    assert changes[0].cause is Cause.PAYMENT_APPROVED


def test_cannot_pay_an_order_whose_payment_window_has_elapsed() -> None:
    order = new_order()
    with pytest.raises(PaymentWindowClosed) as raised:
        domain.pay(order, order.expires_at, method="alipay", reference="r")
    assert raised.value.expires_at == order.expires_at


def test_one_microsecond_before_the_expiry_an_order_can_still_be_paid() -> None:
    order = new_order()
    paid, _ = domain.pay(
        order, order.expires_at - timedelta(microseconds=1), method="card", reference="r"
    )
    assert paid.status is S.PAID


def test_an_order_cannot_expire_before_its_window_ends() -> None:
    order = new_order()
    with pytest.raises(NotDueYet) as raised:
        domain.expire(order, order.expires_at - timedelta(seconds=1))
    assert raised.value.due_at == order.expires_at


def test_expiry_and_cancellation_say_why_the_order_ended() -> None:
    order = new_order()
    expired, changes = domain.expire(order, order.expires_at)
    assert (expired.cancel_reason, changes[0].cause) == ("timeout", Cause.PAYMENT_WINDOW_ELAPSED)
    cancelled, changes = domain.cancel(order, T0 + timedelta(minutes=1))
    assert (cancelled.cancel_reason, changes[0].cause) == ("user", Cause.CANCELLED_BY_USER)


def test_a_paid_order_completes_only_seven_days_after_its_session_ends() -> None:
    paid = in_status(S.PAID)
    with pytest.raises(NotDueYet):
        domain.complete(paid, SESSION_END + timedelta(days=7) - timedelta(seconds=1))
    completed, changes = domain.complete(paid, SESSION_END + timedelta(days=7))
    assert completed.status is S.COMPLETED
    assert changes[0].cause is Cause.SESSION_ENDED


# -- the purchase rules ---------------------------------------------------------------------


def test_a_purchase_within_the_limit_and_the_stock_is_allowed() -> None:
    domain.check_purchase(offer(), 4, 0)
    domain.check_purchase(offer(), 1, 3)


def test_a_purchase_is_refused_when_not_on_sale() -> None:
    with pytest.raises(NotOnSale):
        domain.check_purchase(offer(on_sale=False), 1, 0)


@pytest.mark.parametrize("quantity", [0, -1, 5])
def test_quantity_must_be_between_one_and_the_per_user_limit(quantity: int) -> None:
    with pytest.raises(QuantityOutOfRange) as raised:
        domain.check_purchase(offer(), quantity, 0)
    assert raised.value.limit == 4


def test_the_per_user_limit_counts_seats_already_ordered() -> None:
    with pytest.raises(PerUserLimitExceeded) as raised:
        domain.check_purchase(offer(), 2, 3)
    assert (raised.value.limit, raised.value.already, raised.value.requested) == (4, 3, 2)


def test_a_purchase_larger_than_the_stock_is_refused_with_what_is_left() -> None:
    with pytest.raises(InsufficientInventory) as raised:
        domain.check_purchase(offer(available=1), 2, 0)
    assert (raised.value.available, raised.value.requested) == (1, 2)


@given(
    limit=st.integers(1, 10),
    already=st.integers(0, 12),
    quantity=st.integers(-2, 12),
    available=st.integers(0, 20),
)
def test_an_allowed_purchase_never_breaks_the_limit_or_the_stock(
    limit: int, already: int, quantity: int, available: int
) -> None:
    try:
        domain.check_purchase(offer(per_user_limit=limit, available=available), quantity, already)
    except (QuantityOutOfRange, PerUserLimitExceeded, InsufficientInventory):
        return
    assert 1 <= quantity <= available
    assert already + quantity <= limit


# -- refund requests ------------------------------------------------------------------------


def test_a_paid_order_can_ask_for_a_refund_before_the_session() -> None:
    request = domain.request_refund(
        in_status(S.PAID), RefundRequestId("r1"), now=T0 + timedelta(days=1), reason="sick"
    )
    assert request.status is RefundStatus.PENDING
    assert request.amount == Decimal("2560")


def test_no_refund_can_be_asked_once_the_session_started() -> None:
    with pytest.raises(RefundWindowClosed):
        domain.request_refund(
            in_status(S.PAID), RefundRequestId("r1"), now=SESSION_START, reason=None
        )


@pytest.mark.parametrize("status", [s for s in OrderStatus if s is not S.PAID])
def test_only_paid_orders_can_ask_for_a_refund(status: OrderStatus) -> None:
    with pytest.raises(InvalidTransition):
        domain.request_refund(in_status(status), RefundRequestId("r1"), now=T0, reason=None)


def test_a_refund_request_is_decided_once() -> None:
    pending = domain.request_refund(in_status(S.PAID), RefundRequestId("r1"), now=T0, reason=None)
    approved = domain.approve_refund(pending, now=T0, admin_id="admin")
    assert (approved.status, approved.decided_by) == (RefundStatus.APPROVED, "admin")
    rejected = domain.reject_refund(pending, now=T0, admin_id="admin", note="no")
    assert (rejected.status, rejected.note) == (RefundStatus.REJECTED, "no")
    for decided in (approved, rejected):
        with pytest.raises(InvalidRefundTransition):
            domain.approve_refund(decided, now=T0, admin_id="admin")
        with pytest.raises(InvalidRefundTransition):
            domain.reject_refund(decided, now=T0, admin_id="admin", note=None)


# -- check-in -------------------------------------------------------------------------------


def ticket(**changes: object) -> Ticket:
    base = Ticket(
        id=TicketId("t1"),
        order_id=OrderId("o1"),
        user_id=UserId("u1"),
        session_id="s",
        area_id="a",
        seat_number=1,
        status=TicketStatus.VALID,
        payload="MQT1.x.y",
        issued_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_check_in_tells_valid_used_and_refunded_tickets_apart() -> None:
    assert domain.check_in(ticket()) is CheckInResult.VALID
    assert domain.check_in(ticket(checked_in_at=T0)) is CheckInResult.ALREADY_USED
    assert domain.check_in(ticket(status=TicketStatus.VOID)) is CheckInResult.REFUNDED
    voided_after_use = ticket(status=TicketStatus.VOID, checked_in_at=T0)
    assert domain.check_in(voided_after_use) is CheckInResult.REFUNDED


# -- the state machine under any sequence of actions ----------------------------------------


def due_at(order: Order, action: Action) -> datetime | None:
    """When a timed action first becomes possible (None for the others)."""
    return {Action.EXPIRE: order.expires_at, Action.COMPLETE: order.completion_due_at}.get(action)


class OrderLifecycle(RuleBasedStateMachine):
    """Random actions at random times: the order only ever moves along the table, every move
    is recorded once, illegal ones change nothing, and the terminal states stay put."""

    def __init__(self) -> None:
        super().__init__()
        self.order = new_order()
        self.now = T0
        self.history: list[StatusChanged] = []
        self.statuses = [self.order.status]

    @rule(minutes=st.integers(0, 60 * 24 * 400))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(action=st.sampled_from([a for a in Action if a is not Action.AWAIT_PAYMENT]))
    def attempt(self, action: Action) -> None:
        before = self.order
        expected = TRANSITIONS.get((before.status, action))
        refusal: type[Exception] | None = None
        if expected is None:
            refusal = InvalidTransition
        elif action is Action.PAY and self.now >= before.expires_at:
            refusal = PaymentWindowClosed
        elif (due := due_at(before, action)) is not None and self.now < due:
            refusal = NotDueYet
        if refusal is not None:
            with pytest.raises(refusal):
                perform(before, action, self.now)
            return
        after, changes = perform(before, action, self.now)
        assert after.status is expected
        assert len(changes) == 1
        assert (changes[0].from_status, changes[0].to_status) == (before.status, after.status)
        assert changes[0].at == self.now
        self.history += changes
        self.order = after
        self.statuses.append(after.status)

    @precondition(lambda self: self.order.status is S.PENDING_PAYMENT)
    @rule()
    def pay_just_in_time(self) -> None:
        self.now = max(self.now, self.order.expires_at - timedelta(seconds=1))
        if self.now >= self.order.expires_at:
            return
        self.order, changes = domain.pay(self.order, self.now, method="card", reference="r")
        self.history += changes
        self.statuses.append(self.order.status)

    @invariant()
    def every_step_followed_an_allowed_edge(self) -> None:
        for before, after in zip(self.statuses, self.statuses[1:], strict=False):
            assert domain.can_transition(before, after)

    @invariant()
    def the_history_chains(self) -> None:
        status = S.PENDING_PAYMENT
        for change in self.history:
            assert change.from_status is status
            status = change.to_status
        assert status is self.order.status

    @invariant()
    def stamps_match_the_status(self) -> None:
        o = self.order
        assert (o.paid_at is not None) == (o.status in (S.PAID, S.REFUNDED, S.COMPLETED))
        assert (o.cancelled_at is not None) == (o.status is S.CANCELLED)
        assert (o.refunded_at is not None) == (o.status is S.REFUNDED)
        assert (o.completed_at is not None) == (o.status is S.COMPLETED)
        if o.paid_at is not None:
            assert o.paid_at < o.expires_at


TestOrderLifecycle = OrderLifecycle.TestCase
TestOrderLifecycle.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)


@given(
    limit=st.integers(1, 10),
    already=st.integers(0, 12),
    quantity=st.integers(-2, 12),
    available=st.integers(0, 20),
    on_sale=st.booleans(),
)
def test_the_terms_are_the_purchase_rules_without_the_stock(
    limit: int, already: int, quantity: int, available: int, on_sale: bool
) -> None:
    """check_terms (the order path, whose seats the counter and Catalog decide) refuses exactly
    what check_purchase refuses, except for the seats left."""
    terms = offer(per_user_limit=limit, available=available, on_sale=on_sale)
    refused_by_terms: type[Exception] | None = None
    try:
        domain.check_terms(terms, quantity, already)
    except (NotOnSale, QuantityOutOfRange, PerUserLimitExceeded) as exc:
        refused_by_terms = type(exc)
    refused_by_purchase: type[Exception] | None = None
    try:
        domain.check_purchase(terms, quantity, already)
    except (NotOnSale, QuantityOutOfRange, PerUserLimitExceeded, InsufficientInventory) as exc:
        refused_by_purchase = type(exc)
    if refused_by_purchase is InsufficientInventory:
        assert refused_by_terms is None
        assert available < quantity
    else:
        assert refused_by_purchase is refused_by_terms
