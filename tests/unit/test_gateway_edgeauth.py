"""The edge's access table: every public call, every protected one, and the admin area."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marquee.gateway.edgeauth import Access, required_access
from marquee.gateway.routing import route

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
READS = frozenset({"GET", "HEAD"})
ALL = frozenset(METHODS)

# Every public path the gateway routes, with the methods that need no token there.
OPEN_FOR: dict[str, frozenset[str]] = {
    "/api/v1/auth/register": frozenset({"POST"}),
    "/api/v1/auth/login": frozenset({"POST"}),
    "/api/v1/auth/refresh": frozenset({"POST"}),
    "/api/v1/auth/logout": frozenset({"POST"}),
    "/api/v1/auth/whoami": frozenset(),
    "/api/v1/auth": frozenset(),
    "/api/v1/users/me": frozenset(),
    "/api/v1/users/u-1": frozenset(),
    "/api/v1/shows": READS,
    "/api/v1/shows/": READS,
    "/api/v1/shows/show-5678": READS,
    "/api/v1/shows/show-5678/sessions": READS,
    "/api/v1/sessions": READS,
    "/api/v1/sessions/session-001/availability": READS,
    "/api/v1/venues": READS,
    "/api/v1/venues/v-1": READS,
    "/api/v1/orders": frozenset(),
    "/api/v1/orders/order-9999": frozenset(),
    "/api/v1/orders/order-9999/pay": frozenset(),
    "/api/v1/tickets": frozenset(),
    "/api/v1/tickets/ticket-001": frozenset(),
    "/api/v1/tickets/ticket-001/qr.png": READS,
    "/api/v1/tickets/ticket-001/qr.png/x": frozenset(),
    "/api/v1/tickets/a/b/qr.png": frozenset(),
    "/api/v1/tickets//qr.png": frozenset(),
    "/api/v1/tickets/ticket-001/qr.pngx": frozenset(),
    "/api/v1/tickets/ticket-001/qrXpng": frozenset(),
    "/api/v1/tickets/signing-key": READS,
    "/api/v1/tickets/signing-key/x": frozenset(),
    "/api/v1/notifications": frozenset(),
    "/api/v1/notifications/n-1": frozenset(),
}

ADMIN_PATHS = (
    "/api/v1/admin",
    "/api/v1/admin/users",
    "/api/v1/admin/users/u-1/role",
    "/api/v1/admin/shows",
    "/api/v1/admin/shows/show-1/sessions",
    "/api/v1/admin/orders",
    "/api/v1/admin/refund-requests/r-1/approve",
    "/api/v1/admin/notifications",
)

TABLE = [
    pytest.param(
        method, path, Access.PUBLIC if method in open_for else Access.USER, id=f"{method} {path}"
    )
    for path, open_for in OPEN_FOR.items()
    for method in METHODS
]


@pytest.mark.parametrize(("method", "path", "access"), TABLE)
def test_each_call_needs_exactly_what_the_table_says(
    method: str, path: str, access: Access
) -> None:
    assert required_access(method, path) is access


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_everything_under_admin_needs_an_admin_whatever_the_method(method: str, path: str) -> None:
    assert required_access(method, path) is Access.ADMIN


def test_the_public_reads_are_open_only_to_reads() -> None:
    for path in ("/api/v1/shows", "/api/v1/sessions/s-1", "/api/v1/venues"):
        opened = {m for m in METHODS if required_access(m, path) is Access.PUBLIC}
        assert opened == READS, path


def test_the_token_endpoints_are_open_only_to_post() -> None:
    for action in ("register", "login", "refresh", "logout"):
        path = f"/api/v1/auth/{action}"
        opened = {m for m in METHODS if required_access(m, path) is Access.PUBLIC}
        assert opened == {"POST"}, path


def test_a_lookalike_of_a_public_prefix_is_protected() -> None:
    assert required_access("GET", "/api/v1/showsx") is Access.USER
    assert required_access("GET", "/api/v1/venues-admin") is Access.USER
    assert required_access("POST", "/api/v1/auth/register/") is Access.USER
    assert required_access("GET", "/api/v1/adminx") is Access.USER


def test_every_routed_path_in_the_table_is_one_the_gateway_routes() -> None:
    # The table must describe real routes, or it proves nothing about the gateway.
    for path in (*OPEN_FOR, *ADMIN_PATHS[1:]):
        assert route(path) is not None, path


segments = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_."),
    min_size=1,
    max_size=12,
)


@given(st.sampled_from(METHODS), st.lists(segments, max_size=4))
def test_nothing_under_admin_is_ever_open(method: str, parts: list[str]) -> None:
    path = "/".join(["/api/v1/admin", *parts])
    assert required_access(method, path) is Access.ADMIN


@given(st.sampled_from(sorted(ALL - READS)), st.lists(segments, max_size=4))
def test_no_write_is_open_except_the_four_token_calls(method: str, parts: list[str]) -> None:
    path = "/".join(["/api/v1", *parts])
    access = required_access(method, path)
    if access is Access.PUBLIC:
        assert method == "POST"
        assert path in {f"/api/v1/auth/{a}" for a in ("register", "login", "refresh", "logout")}


@given(
    st.sampled_from(METHODS),
    st.sampled_from(["orders", "users", "notifications"]),
    st.lists(segments, max_size=3),
)
def test_orders_users_and_notifications_always_need_a_token(
    method: str, area: str, parts: list[str]
) -> None:
    path = "/".join([f"/api/v1/{area}", *parts])
    assert required_access(method, path) is Access.USER
