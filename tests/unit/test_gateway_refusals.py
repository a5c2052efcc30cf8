"""The gateway's kept refusals: which answers are kept, for how long, and how they are given."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marquee.gateway.refusals import (
    MAX_AGE_CAP,
    MAX_KEY_BODY,
    SharedRefusals,
    max_age,
    without_max_age,
)

BODY = b'{"session_id":"s-1","seat_area_id":"a-1","quantity":1}'
SOLD_OUT = orjson.dumps(
    {
        "type": "https://marquee.dev/problems/insufficient_inventory",
        "status": 409,
        "code": "insufficient_inventory",
        "available": 0,
        "request_id": "first-request",
    }
)
HEADERS = [
    (b"content-type", b"application/problem+json"),
    (b"marquee-refusal-max-age", b"1"),
    (b"content-length", b"%d" % len(SOLD_OUT)),
]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def refusals(clock: Clock) -> SharedRefusals:
    return SharedRefusals(clock=clock)


def key(body: bytes = BODY) -> tuple[str, str, bytes, bytes]:
    found = SharedRefusals.key("POST", "/api/v1/orders", b"", body)
    assert found is not None
    return found


def test_a_marked_refusal_is_given_again_with_the_new_request_id(
    refusals: SharedRefusals,
) -> None:
    refusals.keep(key(), 409, HEADERS, SOLD_OUT)

    kept = refusals.find(key())

    assert kept is not None
    status, headers, body = kept.render("second-request")
    problem = orjson.loads(body)
    assert status == 409
    assert problem["request_id"] == "second-request"
    assert problem["code"] == "insufficient_inventory"
    assert (b"content-length", b"%d" % len(body)) in headers
    assert not any(name == b"marquee-refusal-max-age" for name, _ in headers)
    assert refusals.served == 1


def test_it_lapses_after_its_max_age(refusals: SharedRefusals, clock: Clock) -> None:
    refusals.keep(key(), 409, HEADERS, SOLD_OUT)

    clock.now += 0.99
    assert refusals.find(key()) is not None
    clock.now += 0.01
    assert refusals.find(key()) is None
    assert len(refusals) == 0


def test_only_the_identical_request_gets_it(refusals: SharedRefusals) -> None:
    refusals.keep(key(), 409, HEADERS, SOLD_OUT)

    assert refusals.find(key(BODY.replace(b'"quantity":1', b'"quantity":2'))) is None
    other_path = SharedRefusals.key("POST", "/api/v1/orders/x/pay", b"", BODY)
    assert other_path is not None
    assert refusals.find(other_path) is None


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (409, [(b"content-type", b"application/problem+json")], SOLD_OUT),  # not marked
        (201, HEADERS, b'{"order_id":"o-1"}'),  # not a refusal
        (503, HEADERS, SOLD_OUT),  # an outage is never repeated
        (409, HEADERS, b"not json"),
        (409, HEADERS, b"[1, 2]"),
    ],
)
def test_answers_that_are_not_marked_problem_refusals_are_never_kept(
    refusals: SharedRefusals, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    refusals.keep(key(), status, headers, body)

    assert refusals.find(key()) is None


def test_a_successful_write_forgets_everything(refusals: SharedRefusals) -> None:
    refusals.keep(key(), 409, HEADERS, SOLD_OUT)

    refusals.forget()

    assert refusals.find(key()) is None


def test_large_bodies_are_never_keys() -> None:
    assert SharedRefusals.key("POST", "/p", b"", b"x" * (MAX_KEY_BODY + 1)) is None


def test_capacity_is_bounded_dropping_the_oldest(clock: Clock) -> None:
    refusals = SharedRefusals(capacity=3, clock=clock)
    bodies = [b'{"n":%d}' % n for n in range(5)]
    for body in bodies:
        refusals.keep(key(body), 409, HEADERS, SOLD_OUT)

    assert len(refusals) == 3
    assert refusals.find(key(bodies[0])) is None
    assert refusals.find(key(bodies[4])) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"1", 1.0),
        (b"0.25", 0.25),
        (b"3600", MAX_AGE_CAP),
        (b"0", None),
        (b"-1", None),
        (b"nan", None),
        (b"soon", None),
    ],
)
def test_max_age_is_read_capped_and_validated(value: bytes, expected: float | None) -> None:
    assert max_age([(b"marquee-refusal-max-age", value)]) == expected
    assert max_age([(b"content-type", b"application/json")]) is None


@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=8))
def test_the_marker_never_reaches_the_client(headers: list[tuple[bytes, bytes]]) -> None:
    marked = [*headers, (b"marquee-refusal-max-age", b"1")]

    assert without_max_age(marked) == [h for h in headers if h[0] != b"marquee-refusal-max-age"]
