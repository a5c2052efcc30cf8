"""The supervisor's restart delays and log rotation: pure rules."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from marquee.supervisor import Backoff, describe_exit, rotate


def test_the_first_restart_waits_the_first_delay_and_each_next_one_twice_as_long() -> None:
    backoff = Backoff(first=1.0, cap=30.0)

    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.01, max_value=10))
def test_delays_never_shrink_and_never_pass_the_cap(failures: int, first: float) -> None:
    backoff = Backoff(first=first, cap=first * 20)

    assert first <= backoff.delay(failures) <= backoff.delay(failures + 1) <= first * 20


def test_a_child_that_ran_long_enough_starts_over_at_the_first_delay() -> None:
    backoff = Backoff(stable_after=60.0)

    assert backoff.failures_after(5, ran_for=59.0) == 6
    assert backoff.failures_after(5, ran_for=60.0) == 1


def test_exits_are_described_by_status_or_signal() -> None:
    assert describe_exit(3) == "status 3"
    assert describe_exit(-9) == "signal SIGKILL"


def test_a_log_file_is_rotated_only_once_too_big_keeping_a_few(tmp_path: Path) -> None:
    log = tmp_path / "booking.log"
    for generation in range(5):
        log.write_text(f"generation {generation}\n" * 10)
        rotate(log, max_bytes=10, keep=2)
    log.write_text("small")
    rotate(log, max_bytes=10, keep=2)

    assert log.read_text() == "small"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "booking.log",
        "booking.log.1",
        "booking.log.2",
    ]
    assert (tmp_path / "booking.log.1").read_text().startswith("generation 4")
    assert (tmp_path / "booking.log.2").read_text().startswith("generation 3")
