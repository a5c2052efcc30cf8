import asyncio
import ipaddress
from urllib.parse import unquote

import pytest

from marquee.gateway.admission import Admission, Rejected
from marquee.gateway.app import upstream_path, upstream_query
from marquee.gateway.clientip import client_ip
from marquee.gateway.routing import route

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/register", "identity"),
        ("/api/v1/users/me", "identity"),
        ("/api/v1/shows", "catalog"),
        ("/api/v1/shows/show-1/sessions", "catalog"),
        ("/api/v1/sessions/s-1/availability", "catalog"),
        ("/api/v1/orders", "booking"),
        ("/api/v1/orders/o-1/pay", "booking"),
        ("/api/v1/tickets/t-1/qr.png", "booking"),
        ("/api/v1/notifications", "notification"),
        ("/api/v1/admin/shows", "catalog"),
        ("/api/v1/admin/refund-requests/r-1/approve", "booking"),
        ("/api/v1/admin/users", "identity"),
    ],
)
def test_each_public_path_goes_to_its_owning_service(path: str, service: str) -> None:
    assert route(path) == service


@pytest.mark.parametrize(
    "path",
    [
        "/internal/inventory/reserve",
        "/api/v1/orders/internal/x",
        "/api/v1/showsx",
        "/api/v1/admin",
        "/api/v2/shows",
        "/api/v1/shows/../internal",
        "/",
    ],
)
def test_internal_and_unknown_paths_are_not_routed(path: str) -> None:
    assert route(path) is None


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", TRUSTED) == "203.0.113.9"


def test_forwarded_for_is_believed_from_a_trusted_proxy() -> None:
    assert client_ip("10.0.0.5", "198.51.100.7", TRUSTED) == "198.51.100.7"


def test_the_client_is_the_first_untrusted_hop_from_the_right() -> None:
    spoofed = "6.6.6.6, 198.51.100.7, 10.0.0.9"
    assert client_ip("10.0.0.5", spoofed, TRUSTED) == "198.51.100.7"


def test_garbage_in_forwarded_for_falls_back_to_the_peer() -> None:
    assert client_ip("10.0.0.5", "not-an-ip", TRUSTED) == "10.0.0.5"


async def test_admission_lets_requests_through_up_to_its_concurrency() -> None:
    admission = Admission(concurrency=2, queue=0, timeout=0.1)
    await admission.acquire()
    await admission.acquire()
    with pytest.raises(Rejected, match="queue_full"):
        await admission.acquire()
    admission.release()
    await admission.acquire()
    assert admission.active == 2


async def test_a_queued_request_gets_the_next_free_slot() -> None:
    admission = Admission(concurrency=1, queue=1, timeout=1.0)
    await admission.acquire()
    waiter = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0.01)
    assert admission.waiting == 1
    admission.release()
    await asyncio.wait_for(waiter, 1)
    assert admission.active == 1
    assert admission.waiting == 0


async def test_a_request_that_waits_too_long_is_refused() -> None:
    admission = Admission(concurrency=1, queue=5, timeout=0.05)
    await admission.acquire()
    with pytest.raises(Rejected, match="queue_timeout"):
        await admission.acquire()
    assert admission.waiting == 0
    admission.release()
    assert admission.active == 0


async def test_admission_never_exceeds_its_concurrency_under_a_crowd() -> None:
    admission = Admission(concurrency=3, queue=50, timeout=2.0)
    peak = 0

    async def one() -> None:
        nonlocal peak
        await admission.acquire()
        try:
            peak = max(peak, admission.active)
            await asyncio.sleep(0.001)
        finally:
            admission.release()

    await asyncio.gather(*(one() for _ in range(40)))
    assert peak == 3
    assert admission.active == 0


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/api/v1/shows", "/api/v1/shows"),
        ("/api/v1/shows/show-1/sessions", "/api/v1/shows/show-1/sessions"),
        ("/api/v1/shows/周杰伦", "/api/v1/shows/%E5%91%A8%E6%9D%B0%E4%BC%A6"),
        ("/api/v1/shows/a b", "/api/v1/shows/a%20b"),
        ("/api/v1/shows/100%", "/api/v1/shows/100%25"),
        ("/api/v1/shows/a?b#c", "/api/v1/shows/a%3Fb%23c"),
    ],
)
def test_paths_go_upstream_percent_encoded(path: str, sent: str) -> None:
    assert upstream_path(path) == sent
    assert unquote(upstream_path(path)) == path


@pytest.mark.parametrize(
    ("query", "sent"),
    [
        (b"", ""),
        (b"city=%E4%B8%8A%E6%B5%B7&page=2", "city=%E4%B8%8A%E6%B5%B7&page=2"),
        ("city=上海".encode(), "city=%E4%B8%8A%E6%B5%B7"),
        (b"q=a b", "q=a%20b"),
        (b"q=%zz&x=1+2", "q=%zz&x=1+2"),
        (b"q=a#b&c=|", "q=a%23b&c=%7C"),
        (b'q="<x>"', "q=%22%3Cx%3E%22"),
    ],
)
def test_queries_go_upstream_as_sent_or_escaped_when_not_ascii(query: bytes, sent: str) -> None:
    assert upstream_query(query) == sent
