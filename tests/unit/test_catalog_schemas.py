"""Catalog's request validation and exact JSON rendering, and raw UTF-8 query strings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from marquee.catalog.api import ERRORS
from marquee.catalog.client import Reservation
from marquee.catalog.domain import CatalogError, from_minor
from marquee.catalog.schemas import (
    SeatAreaCreate,
    SeatAreaPatch,
    SeatAreaView,
    SessionPatch,
    ShowCreate,
    ShowPatch,
    to_json,
)


def area(price: Decimal) -> SeatAreaView:
    return SeatAreaView(area_id="vip-a", name="VIP A区", price=price, currency="CNY", available=45)


def test_an_integral_price_is_a_json_integer_as_in_the_seed() -> None:
    body = to_json(area(Decimal("1280.00")))
    assert b'"price":1280,' in body
    assert orjson.loads(body)["price"] == 1280


def test_a_fractional_price_keeps_exactly_its_digits() -> None:
    assert b'"price":99.5,' in to_json(area(Decimal("99.50")))


@given(st.integers(min_value=0, max_value=10**12))
def test_every_price_reads_back_as_the_same_decimal(minor: int) -> None:
    price = from_minor(minor)
    parsed = orjson.loads(to_json(area(price)))["price"]
    assert Decimal(str(parsed)) == price


def test_text_is_utf8_and_times_are_utc_with_a_z() -> None:
    hold = Reservation(
        reservation_id="order-1",
        session_id="session-001",
        area_id="vip-a",
        quantity=2,
        status="held",
        expires_at=datetime(2026, 1, 14, 15, 30, tzinfo=UTC),
        unit_price=Decimal(1280),
        currency="CNY",
        available=43,
    )
    body = to_json(hold)
    assert b'"expires_at":"2026-01-14T15:30:00Z"' in body
    assert "VIP A区".encode() in to_json(area(Decimal(1)))
    assert Reservation.model_validate(orjson.loads(body)) == hold


@pytest.mark.parametrize(
    "body",
    [
        {"name": "VIP", "price": 99.999, "capacity": 1},
        {"name": "VIP", "price": "99.5", "capacity": 1},
        {"name": "VIP", "price": True, "capacity": 1},
        {"name": "VIP", "price": 1, "capacity": "5"},
        {"name": "VIP", "price": 1, "capacity": True},
        {"name": "VIP", "price": 1, "capacity": 5.5},
        {"name": "VIP", "price": -1, "capacity": 1},
        {"name": "VIP", "price": 1, "capacity": -1},
        {"name": "VIP", "price": 1, "capacity": 1, "currency": "rmb"},
        {"name": " ", "price": 1, "capacity": 1},
        {"name": "VIP", "price": 1, "capacity": 1, "colour": "gold"},
        {"name": "VIP", "price": "NaN", "capacity": 1},
    ],
)
def test_bad_seat_areas_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SeatAreaCreate.model_validate(body)


def test_a_seat_area_defaults_to_cny() -> None:
    created = SeatAreaCreate.model_validate({"name": " VIP A区 ", "price": 1280, "capacity": 45})
    assert (created.name, created.price, created.currency) == ("VIP A区", Decimal(1280), "CNY")


def test_money_in_a_request_is_an_exact_number_of_cents() -> None:
    for sent, read in [(1280, Decimal(1280)), (99.5, Decimal("99.5")), (0.57, Decimal("0.57"))]:
        assert SeatAreaCreate.model_validate({"name": "A", "price": sent, "capacity": 1}).price == (
            read
        )
    # Some encoders write 0.57 as 0.5700000000000001: that is still 57 cents.
    noisy = SeatAreaCreate.model_validate({"name": "A", "price": 57 * 0.01, "capacity": 1})
    assert noisy.price == Decimal("0.57")


def test_a_show_names_its_venue_by_id_or_by_name_and_city() -> None:
    shows = TypeAdapter(ShowCreate)
    by_id = {"title": "茶馆", "category": "话剧", "venue_id": "venue-1"}
    assert shows.validate_python(by_id).model_dump()["venue_id"] == "venue-1"
    by_name = {"title": "茶馆", "category": "话剧", "venue": "首都剧场", "city": "北京"}
    assert shows.validate_python(by_name).model_dump()["city"] == "北京"
    for venue in (
        {},
        {"venue": "首都剧场"},
        {"venue_id": "v", "venue": "首都剧场", "city": "北京"},
    ):
        with pytest.raises(ValidationError):
            shows.validate_python({"title": "茶馆", "category": "话剧", **venue})


def test_a_show_status_is_one_of_three() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(ShowCreate).validate_python(
            {"title": "茶馆", "category": "话剧", "venue_id": "v", "status": "published"}
        )


def test_a_patch_changes_only_what_it_names_and_clears_only_what_may_be_cleared() -> None:
    assert SessionPatch.model_validate({"sale_ends_at": None}).changes() == {"sale_ends_at": None}
    assert SeatAreaPatch.model_validate({"capacity": 50}).changes() == {"capacity": 50}
    with pytest.raises(ValidationError):
        SessionPatch.model_validate({"starts_at": None})
    with pytest.raises(ValidationError):
        ShowPatch.model_validate({"title": None})


def test_what_a_patch_cannot_clear_its_schema_does_not_offer_to() -> None:
    title = ShowPatch.model_json_schema()["properties"]["title"]
    assert title["type"] == "string"
    assert "default" not in title
    sale_ends = SessionPatch.model_json_schema()["properties"]["sale_ends_at"]
    assert {"type": "null"} in sale_ends["anyOf"]


def test_session_times_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError):
        SessionPatch.model_validate({"starts_at": "2026-08-15T19:30:00"})


def test_every_catalog_error_has_a_problem_in_the_one_table() -> None:
    def subclasses(kind: type[CatalogError]) -> set[type[CatalogError]]:
        found = set(kind.__subclasses__())
        return found.union(*(subclasses(k) for k in found)) if found else found

    assert subclasses(CatalogError) == set(ERRORS)
    assert {status for status, _, _ in ERRORS.values()} <= {404, 409, 422}
