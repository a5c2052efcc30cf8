"""The notification rules: which message an event causes, retries with backoff, masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marquee.booking.events import ORDER_COMPLETED, ORDER_SUBJECTS
from marquee.notification.domain import (
    KIND_BY_SUBJECT,
    DeliveryStatus,
    Kind,
    after_failure,
    mask_email,
    mask_phone,
    parse_payload,
    retry_delay,
)

NOW = datetime(2026, 1, 14, 15, 30, tzinfo=UTC)


def test_every_order_event_but_completion_sends_a_message() -> None:
    assert set(KIND_BY_SUBJECT) == set(ORDER_SUBJECTS) - {ORDER_COMPLETED}
    assert KIND_BY_SUBJECT["orders.paid"] is Kind.E_TICKETS


def test_an_event_nobody_is_told_about_has_no_payload_model() -> None:
    with pytest.raises(ValueError, match=r"orders\.completed"):
        parse_payload(ORDER_COMPLETED, {})


def test_a_payload_that_breaks_the_contract_is_refused() -> None:
    with pytest.raises(ValueError, match="order_id"):
        parse_payload("orders.created", {"user_id": "u1"})


def test_the_retry_delay_doubles_with_each_attempt_until_the_cap() -> None:
    delays = [retry_delay(n, base=10, cap=300, jitter=1.0) for n in range(1, 8)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]


def test_jitter_never_brings_a_retry_below_half_the_exponential_delay() -> None:
    assert retry_delay(3, base=10, cap=300, jitter=0.0) == 20


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=1000),
    cap=st.floats(min_value=0.001, max_value=100_000),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_a_retry_delay_is_always_positive_and_within_the_cap(
    attempt: int, base: float, cap: float, jitter: float
) -> None:
    delay = retry_delay(attempt, base=base, cap=cap, jitter=jitter)
    assert 0 < delay <= cap


def test_jitter_outside_zero_to_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="jitter"):
        retry_delay(1, base=1, cap=1, jitter=1.5)


def test_a_transient_failure_is_retried_later() -> None:
    outcome = after_failure(
        attempts=2, max_attempts=8, permanent=False, now=NOW, base=30, cap=3600, jitter=1.0
    )
    assert outcome.status is DeliveryStatus.PENDING
    assert outcome.next_attempt_at == NOW + timedelta(seconds=60)


def test_the_last_allowed_attempt_failing_gives_up_and_keeps_the_delivery_as_failed() -> None:
    outcome = after_failure(
        attempts=8, max_attempts=8, permanent=False, now=NOW, base=30, cap=3600, jitter=0.5
    )
    assert outcome.status is DeliveryStatus.FAILED


def test_a_permanent_failure_gives_up_at_once() -> None:
    outcome = after_failure(
        attempts=1, max_attempts=8, permanent=True, now=NOW, base=30, cap=3600, jitter=0.5
    )
    assert outcome.status is DeliveryStatus.FAILED


@given(attempts=st.integers(min_value=1, max_value=50), max_attempts=st.integers(1, 50))
def test_a_delivery_is_never_tried_more_than_the_bound(attempts: int, max_attempts: int) -> None:
    outcome = after_failure(
        attempts=attempts,
        max_attempts=max_attempts,
        permanent=False,
        now=NOW,
        base=1,
        cap=10,
        jitter=0.5,
    )
    assert (outcome.status is DeliveryStatus.FAILED) == (attempts >= max_attempts)


def test_a_masked_email_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_email("alice@example.com") == "a***@example.com"


@given(local=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.", min_size=2, max_size=30))
def test_a_masked_email_never_shows_the_whole_local_part(local: str) -> None:
    masked = mask_email(f"{local}@example.com")
    shown, _, domain = masked.rpartition("@")
    assert local not in shown
    assert domain == "example.com"


def test_a_masked_phone_number_shows_only_its_country_code_prefix_and_last_four_digits() -> None:
    assert mask_phone("+8613812345678") == "+86138****5678"
    assert mask_phone("138 1234 5678") == "138****5678"


def test_a_phone_number_too_short_to_mask_is_hidden_entirely() -> None:
    assert mask_phone("12345") == "***"
