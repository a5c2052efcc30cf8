"""The token-bucket arithmetic both cache adapters share: examples, a grid and invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marquee.platform.cache import RateDecision
from marquee.platform.ratelimit import Bucket, take

# Float slack for comparisons between separately rounded sums.
EPS = 1e-9


def spend(
    bucket: Bucket | None, times: int, *, now: float, rate: float, burst: int
) -> tuple[Bucket, list[RateDecision]]:
    decisions = []
    for _ in range(times):
        bucket, decision = take(bucket, now=now, rate=rate, burst=burst)
        decisions.append(decision)
    assert bucket is not None
    return bucket, decisions


def test_a_new_bucket_starts_full() -> None:
    bucket, decision = take(None, now=100.0, rate=1.0, burst=5)

    assert decision == RateDecision(
        allowed=True, limit=5, remaining=4, retry_after=0.0, reset_after=1.0
    )
    assert bucket == Bucket(tokens=4.0, updated_at=100.0)


def test_a_full_bucket_allows_burst_requests_then_refuses() -> None:
    _, decisions = spend(None, 6, now=0.0, rate=1.0, burst=5)

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]


def test_a_refusal_says_when_enough_tokens_will_be_back() -> None:
    bucket, _ = spend(None, 3, now=0.0, rate=4.0, burst=3)

    _, refused = take(bucket, now=0.0, rate=4.0, burst=3)

    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.25)
    assert refused.reset_after == pytest.approx(0.75)


def test_coming_back_after_retry_after_is_allowed_and_not_before() -> None:
    bucket, _ = spend(None, 2, now=10.0, rate=2.0, burst=2)

    _, early = take(bucket, now=10.4, rate=2.0, burst=2)
    _, on_time = take(bucket, now=10.5, rate=2.0, burst=2)

    assert not early.allowed
    assert early.retry_after == pytest.approx(0.1)
    assert on_time.allowed


def test_the_bucket_refills_at_the_rate() -> None:
    bucket, _ = spend(None, 10, now=0.0, rate=10.0, burst=10)

    bucket, decisions = spend(bucket, 4, now=0.3, rate=10.0, burst=10)

    assert [d.allowed for d in decisions] == [True, True, True, False]


def test_the_bucket_never_saves_more_than_the_burst() -> None:
    bucket, _ = spend(None, 1, now=0.0, rate=100.0, burst=3)

    _, decisions = spend(bucket, 4, now=3600.0, rate=100.0, burst=3)

    assert [d.allowed for d in decisions] == [True, True, True, False]


def test_a_refusal_spends_nothing() -> None:
    bucket, _ = spend(None, 2, now=0.0, rate=1.0, burst=2)
    bucket, _ = take(bucket, now=0.5, rate=1.0, burst=2)

    again, decision = take(bucket, now=0.5, rate=1.0, burst=2)

    assert not decision.allowed
    assert again.tokens == pytest.approx(0.5)


def test_a_costly_request_needs_all_its_tokens_at_once() -> None:
    bucket, _ = take(None, now=0.0, rate=1.0, burst=5, cost=3)

    bucket, refused = take(bucket, now=0.0, rate=1.0, burst=5, cost=3)
    _, cheap = take(bucket, now=0.0, rate=1.0, burst=5, cost=2)

    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)
    assert cheap.allowed
    assert cheap.remaining == 0


def test_remaining_counts_whole_tokens_only() -> None:
    bucket, _ = spend(None, 3, now=0.0, rate=1.0, burst=3)

    _, decision = take(bucket, now=1.9, rate=1.0, burst=3)

    assert decision.allowed
    assert decision.remaining == 0
    assert decision.reset_after == pytest.approx(2.1)


def test_a_clock_that_goes_backwards_refills_nothing() -> None:
    bucket, _ = spend(None, 2, now=50.0, rate=1.0, burst=2)

    bucket, decision = take(bucket, now=20.0, rate=1.0, burst=2)

    assert not decision.allowed
    assert bucket.tokens == 0.0
    assert bucket.updated_at == 50.0


def test_a_clock_that_goes_backwards_does_not_count_the_same_time_twice() -> None:
    bucket, _ = spend(None, 4, now=10.0, rate=1.0, burst=4)
    bucket, _ = take(bucket, now=8.0, rate=1.0, burst=4)

    _, decisions = spend(bucket, 2, now=11.0, rate=1.0, burst=4)

    assert [d.allowed for d in decisions] == [True, False]


@pytest.mark.parametrize(
    ("rate", "burst", "cost"),
    [
        (0.0, 5, 1),
        (-1.0, 5, 1),
        (math.inf, 5, 1),
        (math.nan, 5, 1),
        (1.0, 0, 1),
        (1.0, 5, 0),
        (1.0, 5, 6),
    ],
)
def test_limits_that_make_no_sense_are_rejected(rate: float, burst: int, cost: int) -> None:
    with pytest.raises(ValueError, match=r"rate|cost"):
        take(None, now=0.0, rate=rate, burst=burst, cost=cost)


@pytest.mark.parametrize("burst", range(1, 7))
def test_every_small_bucket_decides_exactly(burst: int) -> None:
    rate = 2.0
    for cost in range(1, burst + 1):
        for held in range(burst + 1):
            saved = Bucket(tokens=float(held), updated_at=0.0)
            bucket, decision = take(saved, now=0.0, rate=rate, burst=burst, cost=cost)
            if held >= cost:
                expected = RateDecision(True, burst, held - cost, 0.0, (burst - held + cost) / rate)
                assert bucket.tokens == held - cost
            else:
                expected = RateDecision(
                    False, burst, held, (cost - held) / rate, (burst - held) / rate
                )
                assert bucket.tokens == held
            assert decision == expected, (cost, held)


# -- invariants ------------------------------------------------------------------------------

rates = st.floats(min_value=0.01, max_value=1000.0, allow_nan=False, allow_infinity=False)
bursts = st.integers(min_value=1, max_value=50)


@st.composite
def traffic(
    draw: st.DrawFn, *, backwards: bool = False
) -> tuple[float, int, list[tuple[float, int]]]:
    """A rate, a burst and a run of (clock step, cost) requests."""
    rate = draw(rates)
    burst = draw(bursts)
    least_step = -5.0 if backwards else 0.0
    steps = st.floats(min_value=least_step, max_value=3.0, allow_nan=False)
    requests = draw(
        st.lists(st.tuples(steps, st.integers(min_value=1, max_value=burst)), max_size=60)
    )
    return rate, burst, requests


@given(traffic(backwards=True))
def test_tokens_stay_between_zero_and_the_burst(
    case: tuple[float, int, list[tuple[float, int]]],
) -> None:
    rate, burst, requests = case
    bucket: Bucket | None = None
    now = 1000.0
    for step, cost in requests:
        now += step
        bucket, decision = take(bucket, now=now, rate=rate, burst=burst, cost=cost)
        assert 0.0 <= bucket.tokens <= burst
        assert 0 <= decision.remaining <= burst
        assert decision.remaining == math.floor(bucket.tokens)
        assert decision.limit == burst


@given(traffic(backwards=True))
def test_retry_after_is_positive_exactly_when_refused(
    case: tuple[float, int, list[tuple[float, int]]],
) -> None:
    rate, burst, requests = case
    bucket: Bucket | None = None
    now = 1000.0
    for step, cost in requests:
        now += step
        bucket, decision = take(bucket, now=now, rate=rate, burst=burst, cost=cost)
        assert (decision.retry_after > 0) == (not decision.allowed)
        assert decision.retry_after >= 0
        assert 0 <= decision.retry_after <= decision.reset_after <= burst / rate + EPS


@given(traffic(backwards=True))
def test_no_window_grants_more_than_the_burst_plus_the_refill(
    case: tuple[float, int, list[tuple[float, int]]],
) -> None:
    rate, burst, requests = case
    bucket: Bucket | None = None
    now = 1000.0
    first = latest = now + requests[0][0] if requests else now
    granted = 0
    for step, cost in requests:
        now += step
        latest = max(latest, now)
        bucket, decision = take(bucket, now=now, rate=rate, burst=burst, cost=cost)
        granted += cost if decision.allowed else 0
        assert granted <= burst + rate * (latest - first) + EPS * (1 + rate * (latest - first))


@given(traffic(), st.integers(min_value=1, max_value=50))
def test_waiting_retry_after_is_enough(
    case: tuple[float, int, list[tuple[float, int]]], cost: int
) -> None:
    rate, burst, requests = case
    cost = min(cost, burst)
    bucket: Bucket | None = None
    now = 1000.0
    for step, each in requests:
        now += step
        bucket, _ = take(bucket, now=now, rate=rate, burst=burst, cost=each)

    bucket, decision = take(bucket, now=now, rate=rate, burst=burst, cost=cost)
    if not decision.allowed:
        later = now + decision.retry_after * (1 + EPS) + EPS
        _, retried = take(bucket, now=later, rate=rate, burst=burst, cost=cost)
        assert retried.allowed


@given(traffic(), st.floats(min_value=0.0, max_value=3.0), st.floats(min_value=0.0, max_value=3.0))
def test_asking_and_being_refused_changes_nothing(
    case: tuple[float, int, list[tuple[float, int]]], first_wait: float, second_wait: float
) -> None:
    rate, burst, requests = case
    bucket: Bucket | None = None
    now = 1000.0
    for step, cost in requests:
        now += step
        bucket, _ = take(bucket, now=now, rate=rate, burst=burst, cost=cost)

    # Asking for the whole burst is refused unless the bucket is full.
    asked, refused = take(bucket, now=now + first_wait, rate=rate, burst=burst, cost=burst)
    _, after_asking = take(asked, now=now + first_wait + second_wait, rate=rate, burst=burst)
    _, without_asking = take(bucket, now=now + first_wait + second_wait, rate=rate, burst=burst)

    if not refused.allowed:
        assert after_asking.reset_after == pytest.approx(without_asking.reset_after, abs=1e-6)
