"""Rate-limit headers: what the client reads from each token-bucket decision."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marquee.gateway.limits import (
    rate_limit_headers,
    rate_limit_policy,
    retry_after,
    whole_seconds,
)
from marquee.platform.cache import RateDecision
from marquee.platform.ratelimit import Bucket, take


def headers(decision: RateDecision) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in rate_limit_headers(decision)}


def test_a_fresh_client_sees_the_burst_less_one_remaining() -> None:
    _, decision = take(None, now=0.0, rate=10.0, burst=10)

    assert headers(decision) == {
        "ratelimit-limit": "10",
        "ratelimit-remaining": "9",
        "ratelimit-reset": "1",
    }


def test_the_eleventh_request_in_one_instant_is_told_to_wait_a_second() -> None:
    bucket: Bucket | None = None
    decisions = []
    for _ in range(11):
        bucket, decision = take(bucket, now=5.0, rate=10.0, burst=10)
        decisions.append(decision)

    refused = decisions[-1]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert retry_after(refused) == 1
    assert headers(refused) == {
        "ratelimit-limit": "10",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "1",
    }


def test_a_slow_bucket_asks_for_a_longer_wait() -> None:
    bucket, _ = take(None, now=0.0, rate=0.25, burst=2)
    bucket, _ = take(bucket, now=0.0, rate=0.25, burst=2)

    _, refused = take(bucket, now=1.0, rate=0.25, burst=2)

    assert not refused.allowed
    assert retry_after(refused) == 3  # 0.25 token back after 1 s; 0.75 more take 3 s
    assert headers(refused)["ratelimit-reset"] == "7"


@pytest.mark.parametrize(
    ("seconds", "whole"),
    [(0.0, 0), (0.1, 1), (1.0, 1), (0.1 * 3 / 0.3, 1), (1.0000001, 2), (2.5, 3), (-1.0, 0)],
)
def test_seconds_round_up_but_not_for_float_noise(seconds: float, whole: int) -> None:
    assert whole_seconds(seconds) == whole


def test_retry_after_is_never_zero() -> None:
    tiny = RateDecision(allowed=False, limit=5, remaining=0, retry_after=1e-12, reset_after=0.1)

    assert retry_after(tiny) == 1


@pytest.mark.parametrize(
    ("rate", "burst", "policy"),
    [(10.0, 10, b"10;w=1"), (1.0, 5, b"5;w=5"), (100.0, 10, b"10;w=1"), (2.0, 5, b"5;w=3")],
)
def test_the_policy_names_the_burst_and_the_refill_window(
    rate: float, burst: int, policy: bytes
) -> None:
    assert rate_limit_policy(rate, burst) == policy


@given(
    st.floats(min_value=0.01, max_value=1000.0),
    st.integers(min_value=1, max_value=100),
    st.lists(st.floats(min_value=0.0, max_value=2.0), max_size=40),
)
def test_coming_back_after_retry_after_seconds_is_always_allowed(
    rate: float, burst: int, steps: list[float]
) -> None:
    bucket: Bucket | None = None
    now = 0.0
    for step in steps:
        now += step
        bucket, decision = take(bucket, now=now, rate=rate, burst=burst)
        values = headers(decision)
        assert int(values["ratelimit-limit"]) == burst
        assert 0 <= int(values["ratelimit-remaining"]) <= burst
        assert int(values["ratelimit-reset"]) >= decision.reset_after - 1e-6
        if not decision.allowed:
            _, later = take(bucket, now=now + retry_after(decision), rate=rate, burst=burst)
            assert later.allowed
