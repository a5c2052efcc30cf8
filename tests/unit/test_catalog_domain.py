"""Catalog's pure rules: stock arithmetic, reservation transitions, sale windows, money, time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
)

from marquee.catalog import domain
from marquee.catalog.demo import seed_session_start
from marquee.catalog.domain import (
    AreaId,
    CapacityBelowTakenError,
    InsufficientInventoryError,
    InvalidInputError,
    Move,
    Reservation,
    ReservationId,
    ReservationReleasedError,
    SessionId,
    Stock,
    apply_move,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def held(quantity: int = 2, status: domain.ReservationStatus = "held") -> Reservation:
    return Reservation(
        ReservationId("order-1"),
        SessionId("session-001"),
        AreaId("vip-a"),
        quantity,
        status,
        NOW + timedelta(minutes=15),
        Decimal(1280),
        "CNY",
    )


# -- stock -----------------------------------------------------------------------------------


def test_a_new_area_has_all_its_seats_available() -> None:
    assert Stock(45).available == 45


def test_holding_seats_takes_them_from_what_is_available() -> None:
    assert Stock(45).hold(2) == Stock(45, reserved=2)


def test_holding_more_than_is_available_is_refused_with_what_is_left() -> None:
    with pytest.raises(InsufficientInventoryError) as refused:
        Stock(5, reserved=3, sold=1).hold(2)
    assert (refused.value.available, refused.value.requested) == (1, 2)


def test_confirming_moves_seats_from_reserved_to_sold() -> None:
    assert Stock(10, reserved=4).confirm(3) == Stock(10, reserved=1, sold=3)


def test_releasing_and_refunding_return_seats_to_stock() -> None:
    assert Stock(10, reserved=4, sold=3).release_held(4) == Stock(10, sold=3)
    assert Stock(10, reserved=4, sold=3).release_sold(3) == Stock(10, reserved=4)


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.confirm(3),
        lambda s: s.release_held(3),
        lambda s: s.release_sold(2),
        lambda s: s.hold(0),
        lambda s: s.release_held(-1),
    ],
)
def test_operations_that_would_break_the_books_are_bugs(operation: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the caller is wrong
        operation(Stock(10, reserved=2, sold=1))  # type: ignore[operator]


def test_an_impossible_stock_cannot_even_be_described() -> None:
    for capacity, reserved, sold in [(5, 4, 2), (5, -1, 0), (5, 0, -1)]:
        with pytest.raises(ValueError):  # noqa: PT011
            Stock(capacity, reserved, sold)


def test_capacity_can_shrink_to_what_is_taken_but_not_below() -> None:
    stock = Stock(10, reserved=3, sold=2)
    assert stock.resize(5) == Stock(5, reserved=3, sold=2)
    with pytest.raises(CapacityBelowTakenError) as refused:
        stock.resize(4)
    assert (refused.value.reserved, refused.value.sold) == (3, 2)


@given(
    capacity=st.integers(0, 1000),
    asks=st.lists(st.integers(1, 10), max_size=200),
)
def test_holding_never_hands_out_more_than_the_capacity(capacity: int, asks: list[int]) -> None:
    stock = Stock(capacity)
    granted = 0
    for quantity in asks:
        if quantity > stock.available:
            with pytest.raises(InsufficientInventoryError):
                stock.hold(quantity)
        else:
            stock = stock.hold(quantity)
            granted += quantity
    assert stock.reserved == granted <= capacity
    assert stock.available == capacity - granted


# -- reservations -----------------------------------------------------------------------------


def test_confirming_a_hold_sells_its_seats() -> None:
    after, move = domain.confirm(held())
    assert (after.status, move) == ("confirmed", Move.SELL)


def test_confirming_twice_changes_nothing_the_second_time() -> None:
    assert domain.confirm(held(status="confirmed"))[1] is Move.NOTHING


def test_a_released_reservation_cannot_be_confirmed() -> None:
    released, _ = domain.release(held(), "expired")
    with pytest.raises(ReservationReleasedError) as refused:
        domain.confirm(released)
    assert refused.value.reason == "expired"


def test_releasing_a_hold_returns_the_held_seats() -> None:
    after, move = domain.release(held())
    assert (after.status, after.release_reason, move) == ("released", "cancelled", Move.RETURN_HELD)


def test_releasing_a_confirmed_reservation_is_a_refund() -> None:
    after, move = domain.release(held(status="confirmed"))
    assert (after.release_reason, move) == ("refunded", Move.RETURN_SOLD)


def test_releasing_twice_returns_the_seats_once() -> None:
    released, _ = domain.release(held())
    assert domain.release(released) == (released, Move.NOTHING)


def test_only_holds_past_their_expiry_are_expired() -> None:
    hold = held()
    assert not domain.is_expired(hold, NOW)
    assert domain.is_expired(hold, hold.expires_at)
    assert not domain.is_expired(held(status="confirmed"), NOW + timedelta(days=1))


def test_a_replay_is_the_same_request_only_for_the_same_seats() -> None:
    hold = held(2)
    assert hold.same_request("session-001", "vip-a", 2)
    assert not hold.same_request("session-001", "vip-a", 3)
    assert not hold.same_request("session-001", "vip-b", 2)


class ReservationBooks(RuleBasedStateMachine):
    """The pure model: reservations moved by the domain's transitions, their moves applied to
    one area's stock. Whatever the order, the stock equals what the reservations say."""

    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.stock = Stock(12)
        self.reservations: dict[str, Reservation] = {}

    def _apply(self, before: Reservation, after: Reservation, move: Move) -> None:
        self.stock = apply_move(self.stock, move, before.quantity)
        self.reservations[before.reservation_id] = after

    @rule(target=holds, quantity=st.integers(1, 5))
    def reserve(self, quantity: int) -> str:
        rid = f"r{len(self.reservations)}"
        try:
            self.stock = self.stock.hold(quantity)
        except InsufficientInventoryError:
            assert self.stock.available < quantity
            return rid
        self.reservations[rid] = Reservation(
            ReservationId(rid),
            SessionId("s"),
            AreaId("a"),
            quantity,
            "held",
            NOW,
            Decimal(1),
            "CNY",
        )
        return rid

    @rule(rid=holds)
    def confirm(self, rid: str) -> None:
        before = self.reservations.get(rid)
        if before is None:
            return
        try:
            after, move = domain.confirm(before)
        except ReservationReleasedError:
            assert before.status == "released"
            return
        self._apply(before, after, move)

    @rule(rid=holds)
    def release(self, rid: str) -> None:
        before = self.reservations.get(rid)
        if before is not None:
            self._apply(before, *domain.release(before))

    @rule(rid=holds)
    def expire(self, rid: str) -> None:
        before = self.reservations.get(rid)
        if before is not None and domain.is_expired(before, NOW):
            self._apply(before, *domain.release(before, "expired"))

    @rule(capacity=st.integers(0, 15))
    def resize(self, capacity: int) -> None:
        try:
            self.stock = self.stock.resize(capacity)
        except CapacityBelowTakenError:
            assert capacity < self.stock.taken

    @invariant()
    def stock_matches_the_reservations(self) -> None:
        statuses = self.reservations.values()
        assert self.stock.reserved == sum(r.quantity for r in statuses if r.status == "held")
        assert self.stock.sold == sum(r.quantity for r in statuses if r.status == "confirmed")
        assert self.stock.reserved + self.stock.sold <= self.stock.capacity
        assert self.stock.available == self.stock.capacity - self.stock.reserved - self.stock.sold


TestReservationBooks = ReservationBooks.TestCase


# -- sales and schedules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None


STARTS = NOW + timedelta(days=30)


@pytest.mark.parametrize(
    ("status", "window", "now", "open_"),
    [
        ("on_sale", Window(None, None), NOW, True),
        ("off_sale", Window(None, None), NOW, False),
        ("draft", Window(None, None), NOW, False),
        ("on_sale", Window(NOW + timedelta(hours=1), None), NOW, False),
        ("on_sale", Window(NOW - timedelta(hours=1), None), NOW, True),
        ("on_sale", Window(None, NOW), NOW, False),
        ("on_sale", Window(None, None), STARTS, False),
        ("on_sale", Window(None, STARTS + timedelta(hours=1)), STARTS, True),
    ],
)
def test_a_session_is_on_sale_only_within_its_window(
    status: domain.ShowStatus, window: Window, now: datetime, open_: bool
) -> None:
    assert domain.sale_open(status, STARTS, window.start, window.end, now) is open_


@pytest.mark.parametrize(
    ("ends", "sale_start", "sale_end", "field"),
    [
        (STARTS, None, None, "ends_at"),
        (STARTS + timedelta(hours=3), STARTS + timedelta(hours=3), None, "sale_starts_at"),
        (STARTS + timedelta(hours=3), None, STARTS + timedelta(hours=4), "sale_ends_at"),
        (STARTS + timedelta(hours=3), NOW, NOW, "sale_ends_at"),
    ],
)
def test_schedules_that_make_no_sense_are_refused(
    ends: datetime, sale_start: datetime | None, sale_end: datetime | None, field: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        domain.check_schedule(STARTS, ends, sale_start, sale_end)
    assert refused.value.field == field


def test_a_sensible_schedule_is_accepted() -> None:
    domain.check_schedule(STARTS, STARTS + timedelta(hours=3), NOW, STARTS)


# -- money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "minor", "text"),
    [
        (Decimal(1280), 128000, "1280"),
        (Decimal("1280.00"), 128000, "1280"),
        (Decimal("99.5"), 9950, "99.5"),
        (Decimal("0.05"), 5, "0.05"),
        (Decimal(0), 0, "0"),
    ],
)
def test_prices_are_exact_in_minor_units_and_as_json_numbers(
    amount: Decimal, minor: int, text: str
) -> None:
    assert domain.to_minor(amount) == minor
    assert domain.money_text(domain.from_minor(minor)) == text


@given(st.integers(min_value=0, max_value=10**14))
def test_minor_units_survive_the_round_trip_through_decimal(minor: int) -> None:
    amount = domain.from_minor(minor)
    assert domain.to_minor(amount) == minor
    assert Decimal(domain.money_text(amount)) == amount


@pytest.mark.parametrize("amount", ["0.001", "-1", "NaN", "Infinity"])
def test_prices_that_are_not_whole_fen_are_refused(amount: str) -> None:
    with pytest.raises(InvalidInputError):
        domain.to_minor(Decimal(amount))


@pytest.mark.parametrize("code", ["cny", "CN", "CNYY", "C1Y", "人民币"])
def test_currencies_are_three_capital_letters(code: str) -> None:
    with pytest.raises(InvalidInputError):
        domain.check_currency(code)


# -- time ---------------------------------------------------------------------------------


def test_session_times_are_shown_in_the_venues_zone_as_the_seed_does() -> None:
    starts = datetime(2026, 8, 15, 11, 30, tzinfo=UTC)
    assert domain.display_time(starts, "Asia/Shanghai") == "2026-08-15 19:30"
    assert domain.local_date(datetime(2026, 8, 15, 17, 0, tzinfo=UTC), "Asia/Shanghai") == date(
        2026, 8, 16
    )


def test_unknown_time_zones_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        domain.zone("Mars/Olympus_Mons")


def test_the_demo_session_is_the_seeds_date_while_that_is_ahead_and_a_later_year_after() -> None:
    early = datetime(2026, 1, 14, tzinfo=UTC)
    assert domain.display_time(seed_session_start(early), "Asia/Shanghai") == "2026-08-15 19:30"
    late = datetime(2026, 11, 24, tzinfo=UTC)
    assert domain.display_time(seed_session_start(late), "Asia/Shanghai") == "2027-08-15 19:30"
    close = datetime(2027, 8, 10, tzinfo=UTC)
    assert seed_session_start(close) > close + timedelta(days=7)
