"""The gateway's edge behaviour, in-process, in front of small upstream apps of our own.

The upstreams record every request they receive, so each test can say not only what the
client got but whether (and how) a service was called at all.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response as FastApiResponse
from pydantic import BaseModel, ConfigDict
from starlette.types import Message, Receive, Scope, Send

from marquee.gateway.app import MAX_BODY_BYTES, Gateway
from marquee.platform.app import create_service_app
from marquee.platform.auth import CurrentUser, TokenService
from marquee.platform.context import current_request_id
from marquee.platform.kernel import Kernel
from marquee.platform.logging import RequestIdFilter
from marquee.platform.problems import Problem
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, HttpTransport, Response, Transport
from tests.e2e.conftest import Api

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@dataclass
class Call:
    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    status: int = 0
    body: bytes = b""


@dataclass
class Upstream:
    """One app standing in for every service; it records what reaches it."""

    calls: list[Call] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def api_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.startswith("/api/")]

    def recorder(self, app: FastAPI) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            call = Call(scope["method"], scope["path"], scope["query_string"], headers)
            self.calls.append(call)

            async def send_recorded(message: Message) -> None:
                if message["type"] == "http.response.start":
                    call.status = message["status"]
                elif message["type"] == "http.response.body":
                    call.body += message.get("body", b"")
                await send(message)

            await app(scope, receive, send_recorded)

        return record


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str
    quantity: int


def upstream_app(kernel: Kernel, upstream: Upstream) -> FastAPI:
    router = APIRouter()

    @router.get("/api/v1/shows")
    async def shows(request: Request) -> dict[str, Any]:
        return {"shows": [], "query": dict(request.query_params)}

    @router.get("/api/v1/shows/{show_id}")
    async def show(show_id: str) -> dict[str, Any]:
        return {"show_id": show_id}

    @router.post("/api/v1/auth/login")
    async def login() -> dict[str, str]:
        return {"access_token": "a", "refresh_token": "r"}

    @router.get("/api/v1/users/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"user_id": user.user_id, "role": user.role}

    @router.get("/api/v1/admin/users")
    async def admin_users() -> dict[str, Any]:
        return {"users": []}

    @router.get("/api/v1/orders")
    async def orders() -> dict[str, Any]:
        return {"orders": [], "request_id": current_request_id()}

    @router.post("/api/v1/orders", status_code=201)
    async def place(order: Order) -> Order:
        return order

    @router.get("/api/v1/orders/gated")
    async def gated() -> dict[str, bool]:
        await upstream.gate.wait()
        return {"gated": True}

    @router.get("/api/v1/orders/sold-out")
    async def sold_out() -> None:
        raise Problem(409, "sold_out", "Nothing left.", available=0)

    @router.get("/api/v1/orders/broken")
    async def broken() -> None:
        raise RuntimeError("a bug in the service")

    @router.get("/api/v1/notifications/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(30)
        return {"slow": True}

    @router.get("/api/v1/tickets/{ticket_id}/qr.png")
    async def qr(ticket_id: str) -> FastApiResponse:
        return FastApiResponse(PNG, media_type="image/png")

    @router.get("/internal/users/{user_id}")
    async def internal(user_id: str) -> dict[str, str]:
        return {"user_id": user_id}

    return create_service_app("booking", kernel, routers=[router])


@dataclass
class Edge:
    api: Api
    gateway: Gateway
    upstream: Upstream
    direct: AsgiTransport  # the upstream app itself, bypassing the gateway
    tokens: TokenService


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def make_edge(
    settings: Settings,
) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(
        *, slow_timeout: float = 10.0, down: tuple[str, ...] = (), **overrides: Any
    ) -> AsyncIterator[Edge]:
        chosen = settings.model_copy(
            update={"rate_limit_per_second": 1000.0, "rate_limit_burst": 1000, **overrides}
        )
        kernel = Kernel.from_settings(chosen)
        upstream = Upstream()
        app = upstream_app(kernel, upstream)
        recorded = upstream.recorder(app)
        transports: dict[str, Transport] = {
            name: AsgiTransport(recorded) for name in ("identity", "catalog", "booking")
        }
        transports["notification"] = AsgiTransport(recorded, timeout=slow_timeout)
        for name in down:
            transports[name] = HttpTransport([f"http://127.0.0.1:{closed_port()}"], timeout=2)
        gateway = Gateway(kernel, transports)
        async with LifespanManager(gateway):
            yield Edge(
                Api(AsgiTransport(gateway)), gateway, upstream, AsgiTransport(app), kernel.tokens
            )

    return make


@pytest.fixture
async def edge(make_edge: Callable[..., Any]) -> AsyncIterator[Edge]:
    async with make_edge() as made:
        yield made


@pytest.fixture
def bearer(edge: Edge) -> dict[str, str]:
    return {"Authorization": f"Bearer {edge.tokens.issue_access('u-1', 'customer')}"}


def is_problem(answer: Response, status: int, code: str) -> bool:
    body = answer.json()
    return bool(
        answer.status == status
        and answer.header("content-type") == "application/problem+json"
        and body["code"] == code
        and body["status"] == status
    )


# -- edge authentication ------------------------------------------------------------------


async def test_a_protected_route_without_a_token_is_refused_before_any_upstream_call(
    edge: Edge,
) -> None:
    answer = await edge.api.get("/api/v1/orders")

    assert is_problem(answer, 401, "unauthorized")
    assert (answer.header("www-authenticate") or "").startswith("Bearer")
    assert answer.json()["request_id"] == answer.header("x-request-id")
    assert edge.upstream.api_calls() == []


@pytest.mark.parametrize("kind", ["forged", "expired", "refresh", "garbage", "basic"])
async def test_a_bad_token_is_refused_at_the_edge(edge: Edge, kind: str) -> None:
    if kind == "forged":
        token = TokenService("someone-else-" + "y" * 32).issue_access("u-1", "admin")
    elif kind == "expired":
        token = edge.tokens.issue(
            subject="u-1",
            kind="access",
            claims={"role": "customer"},
            now=time.time() - 3600,
            ttl=60,
        )
    elif kind == "refresh":
        token = edge.tokens.issue(subject="u-1", kind="refresh")
    else:
        token = "not-a-jwt"
    headers = {"Authorization": "Basic dTpw"} if kind == "basic" else None

    answer = await edge.api.post(
        "/api/v1/orders",
        json={"session_id": "s", "quantity": 1},
        token=None if kind == "basic" else token,
        headers=headers,
    )

    assert is_problem(answer, 401, "unauthorized")
    assert (answer.header("www-authenticate") or "").startswith("Bearer")
    assert edge.upstream.api_calls() == []


async def test_a_valid_token_reaches_the_service_with_its_authorization_header(
    edge: Edge,
) -> None:
    token = edge.tokens.issue_access("u-42", "customer")

    answer = await edge.api.get("/api/v1/users/me", token=token)

    assert answer.status == 200
    assert answer.json() == {"user_id": "u-42", "role": "customer"}
    (call,) = edge.upstream.api_calls()
    assert call.headers["authorization"] == f"Bearer {token}"


async def test_a_customer_is_kept_out_of_the_admin_area(edge: Edge) -> None:
    token = edge.tokens.issue_access("u-1", "customer")

    answer = await edge.api.get("/api/v1/admin/users", token=token)

    assert is_problem(answer, 403, "forbidden")
    assert edge.upstream.api_calls() == []


async def test_an_admin_reaches_the_admin_area(edge: Edge) -> None:
    answer = await edge.api.get(
        "/api/v1/admin/users", token=edge.tokens.issue_access("a-1", "admin")
    )

    assert answer.status == 200
    assert answer.json() == {"users": []}


async def test_public_routes_need_no_token(edge: Edge) -> None:
    shows = await edge.api.get("/api/v1/shows")
    login = await edge.api.post("/api/v1/auth/login", json={})
    qr = await edge.api.get("/api/v1/tickets/t-1/qr.png")

    assert (shows.status, login.status, qr.status) == (200, 200, 200)
    assert qr.body == PNG
    assert qr.header("content-type") == "image/png"
    assert len(edge.upstream.api_calls()) == 3


# -- rate limits --------------------------------------------------------------------------


async def test_the_eleventh_request_in_a_second_from_one_ip_is_refused_while_others_are_served(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(rate_limit_per_second=10.0, rate_limit_burst=10) as edge:
        answers = await asyncio.gather(
            *(edge.api.get("/api/v1/shows", ip="203.0.113.7") for _ in range(11))
        )
        other = await edge.api.get("/api/v1/shows", ip="203.0.113.8")

    statuses = sorted(a.status for a in answers)
    assert statuses == [200] * 10 + [429]
    (refused,) = [a for a in answers if a.status == 429]
    assert is_problem(refused, 429, "rate_limited")
    assert int(refused.header("retry-after") or 0) >= 1
    assert refused.header("ratelimit-limit") == "10"
    assert refused.header("ratelimit-remaining") == "0"
    assert int(refused.header("ratelimit-reset") or 0) >= 1
    assert other.status == 200
    assert other.header("ratelimit-remaining") == "9"
    assert len(edge.upstream.api_calls()) == 11


async def test_every_routed_answer_says_how_much_of_the_limit_is_left(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(rate_limit_per_second=10.0, rate_limit_burst=10) as edge:
        first = await edge.api.get("/api/v1/shows", ip="203.0.113.9")
        refused_at_the_edge = await edge.api.get("/api/v1/orders", ip="203.0.113.9")

    assert first.header("ratelimit-limit") == "10"
    assert first.header("ratelimit-remaining") == "9"
    assert first.header("ratelimit-reset") == "1"
    assert first.header("ratelimit-policy") == "10;w=1"
    assert refused_at_the_edge.status == 401
    assert refused_at_the_edge.header("ratelimit-remaining") == "8"


async def test_health_and_docs_are_not_rate_limited(make_edge: Callable[..., Any]) -> None:
    async with make_edge(rate_limit_per_second=1.0, rate_limit_burst=1) as edge:
        answers = [
            await edge.api.get(path, ip="203.0.113.10")
            for path in ["/healthz", "/readyz", "/openapi.json", "/docs"] * 3
        ]

    assert [a.status for a in answers] == [200] * 12
    assert all(a.header("ratelimit-limit") is None for a in answers)


async def test_a_forged_forwarded_for_from_an_untrusted_client_does_not_escape_the_limit(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(rate_limit_per_second=1.0, rate_limit_burst=2) as edge:
        answers = [
            await edge.api.get(
                "/api/v1/shows", ip="203.0.113.11", headers={"X-Forwarded-For": f"10.9.9.{i}"}
            )
            for i in range(3)
        ]

    assert [a.status for a in answers] == [200, 200, 429]


async def test_forwarded_for_from_a_trusted_proxy_tells_clients_apart(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(
        rate_limit_per_second=1.0, rate_limit_burst=1, trusted_proxies=["10.0.0.0/8"]
    ) as edge:
        first = await edge.api.get(
            "/api/v1/shows", ip="10.0.0.2", headers={"X-Forwarded-For": "198.51.100.1"}
        )
        again = await edge.api.get(
            "/api/v1/shows", ip="10.0.0.3", headers={"X-Forwarded-For": "198.51.100.1"}
        )
        another = await edge.api.get(
            "/api/v1/shows", ip="10.0.0.2", headers={"X-Forwarded-For": "198.51.100.2"}
        )

    assert [first.status, again.status, another.status] == [200, 429, 200]
    assert edge.upstream.api_calls()[0].headers["x-forwarded-for"] == "198.51.100.1"


async def test_requests_are_served_when_the_rate_limiter_is_down(
    edge: Edge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(edge.gateway.kernel.cache, "rate_limit", unreachable)

    with caplog.at_level(logging.WARNING, logger="marquee.gateway"):
        answers = [await edge.api.get("/api/v1/shows") for _ in range(3)]

    assert [a.status for a in answers] == [200] * 3
    warnings = [r for r in caplog.records if "Rate limiter unavailable" in r.getMessage()]
    assert len(warnings) == 1


# -- admission, upstream failures -----------------------------------------------------------


async def test_a_saturated_upstream_gets_fast_503s_and_recovers(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(
        upstream_concurrency=2, upstream_queue=2, upstream_queue_timeout_seconds=30.0
    ) as edge:
        token = edge.tokens.issue_access("u-1", "customer")
        held = [
            asyncio.create_task(edge.api.get("/api/v1/orders/gated", token=token)) for _ in range(4)
        ]
        while edge.gateway.admission["booking"].waiting < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.001)

        # Two in flight, two queued: the next one is refused at once, not after the wait.
        refused = await asyncio.wait_for(edge.api.get("/api/v1/orders/gated", token=token), 1.0)
        other_service = await edge.api.get("/api/v1/shows")
        edge.upstream.gate.set()
        served = await asyncio.gather(*held)
        after = await edge.api.get("/api/v1/orders/gated", token=token)

    assert is_problem(refused, 503, "overloaded")
    assert refused.header("retry-after") == "1"
    assert other_service.status == 200
    assert [a.status for a in served] == [200] * 4
    assert after.status == 200
    assert edge.gateway.admission["booking"].active == 0


async def test_an_unreachable_upstream_is_a_502_problem(make_edge: Callable[..., Any]) -> None:
    async with make_edge(down=("notification",)) as edge:
        token = edge.tokens.issue_access("u-1", "customer")
        answer = await edge.api.get("/api/v1/notifications", token=token)

    assert is_problem(answer, 502, "upstream_unavailable")
    assert answer.json()["request_id"] == answer.header("x-request-id")


async def test_an_upstream_that_answers_too_late_is_a_504_problem(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(slow_timeout=0.2) as edge:
        token = edge.tokens.issue_access("u-1", "customer")
        answer = await edge.api.get("/api/v1/notifications/slow", token=token)

    assert is_problem(answer, 504, "upstream_timeout")
    assert edge.gateway.admission["notification"].active == 0


@pytest.mark.parametrize("path", ["/api/v1/orders/sold-out", "/api/v1/orders/broken"])
async def test_upstream_error_answers_pass_through_unchanged(
    edge: Edge, bearer: dict[str, str], path: str
) -> None:
    answer = await edge.api.get(path, headers=bearer)

    (call,) = edge.upstream.api_calls()
    assert answer.status == call.status
    assert answer.status in (409, 500)
    assert answer.body == call.body
    assert answer.json()["code"] in ("sold_out", "internal_error")


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"session_id": "s", "quantity": ', 400, "malformed_json"),
        (b"not json at all", 400, "malformed_json"),
        (b'{"session_id": "s", "quantity": "two"}', 422, "validation_error"),
        (b'{"session_id": "s", "quantity": 1, "discount": 100}', 422, "validation_error"),
        (b'["session_id"]', 422, "validation_error"),
        (b"", 422, "validation_error"),
    ],
)
async def test_bad_bodies_get_4xx_problems_never_500(
    edge: Edge, bearer: dict[str, str], body: bytes, status: int, code: str
) -> None:
    answer = await edge.api.post(
        "/api/v1/orders", body=body, headers={**bearer, "Content-Type": "application/json"}
    )

    assert is_problem(answer, status, code)


async def test_a_body_over_one_mebibyte_is_refused_without_reaching_the_service(
    edge: Edge, bearer: dict[str, str]
) -> None:
    answer = await edge.api.post("/api/v1/orders", body=b"x" * (MAX_BODY_BYTES + 1), headers=bearer)

    assert is_problem(answer, 413, "payload_too_large")
    assert edge.upstream.api_calls() == []


async def raw(
    app: Gateway,
    method: str,
    path: str,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: list[bytes] | None = None,
    disconnect: bool = False,
) -> list[Message]:
    """One request straight through the ASGI interface, for what a client library won't send."""
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks or [b""]) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    if disconnect:
        pending[-1] = {"type": "http.disconnect"}
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers or [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


async def test_a_streamed_body_over_the_limit_without_a_length_is_refused(
    edge: Edge, bearer: dict[str, str]
) -> None:
    chunk = b"x" * (256 * 1024)
    auth = [(b"authorization", bearer["Authorization"].encode())]

    sent = await raw(edge.gateway, "POST", "/api/v1/orders", headers=auth, chunks=[chunk] * 5)

    assert sent[0]["status"] == 413
    assert edge.upstream.api_calls() == []


async def test_a_client_that_goes_away_mid_body_gets_nothing_and_costs_nothing(
    edge: Edge, bearer: dict[str, str]
) -> None:
    auth = [(b"authorization", bearer["Authorization"].encode())]

    sent = await raw(
        edge.gateway, "POST", "/api/v1/orders", headers=auth, chunks=[b"{", b"}"], disconnect=True
    )

    assert sent == []
    assert edge.upstream.api_calls() == []


async def test_a_content_length_that_is_not_a_number_is_a_400(edge: Edge) -> None:
    sent = await raw(
        edge.gateway, "POST", "/api/v1/auth/login", headers=[(b"content-length", b"lots")]
    )

    assert sent[0]["status"] == 400
    assert orjson.loads(sent[1]["body"])["code"] == "bad_request"


# -- request IDs and the access log -------------------------------------------------------


async def test_a_well_formed_request_id_is_echoed_and_reaches_the_service(edge: Edge) -> None:
    answer = await edge.api.get("/api/v1/shows", headers={"X-Request-ID": "abc-123"})

    assert answer.header("x-request-id") == "abc-123"
    (call,) = edge.upstream.api_calls()
    assert call.headers["x-request-id"] == "abc-123"


async def test_a_malformed_request_id_is_replaced_and_the_new_one_reaches_the_service(
    edge: Edge, bearer: dict[str, str]
) -> None:
    answer = await edge.api.get(
        "/api/v1/orders", headers={**bearer, "X-Request-ID": "bad id <script>"}
    )

    made = answer.header("x-request-id")
    assert made
    assert made != "bad id <script>"
    assert answer.json()["request_id"] == made  # as the service itself saw it
    assert edge.upstream.api_calls()[0].headers["x-request-id"] == made


async def test_each_request_writes_one_access_line_in_the_seed_format(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="marquee.gateway.access"):
        await edge.api.get("/api/v1/shows", headers={"X-Request-ID": "abc-123"})
        await edge.api.post("/api/v1/orders", json={}, headers={"X-Request-ID": "abc-124"})
        await edge.api.get("/nowhere", headers={"X-Request-ID": "abc-125"})

    lines = [
        (getattr(r, "request_id", None), r.getMessage())
        for r in caplog.records
        if r.name == "marquee.gateway.access"
    ]
    assert [rid for rid, _ in lines] == ["abc-123", "abc-124", "abc-125"]
    pattern = re.compile(r"^(GET|POST) (/\S+) status=(\d{3}) latency=\d+ms$")
    parsed = [pattern.match(message) for _, message in lines]
    assert all(parsed), lines
    assert [(m.group(2), m.group(3)) for m in parsed if m] == [
        ("/api/v1/shows", "200"),
        ("/api/v1/orders", "401"),
        ("/nowhere", "404"),
    ]


async def test_an_error_inside_the_gateway_is_a_500_problem_logged_once(
    edge: Edge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr(edge.gateway, "_edge_auth", broken)

    with caplog.at_level(logging.INFO):
        answer = await edge.api.get("/api/v1/orders", headers={"X-Request-ID": "oops-1"})

    assert is_problem(answer, 500, "internal_error")
    assert answer.json()["request_id"] == "oops-1"
    assert answer.header("x-request-id") == "oops-1"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert edge.upstream.api_calls() == []


# -- methods, paths and queries ------------------------------------------------------------


async def test_head_answers_the_get_headers_without_a_body(edge: Edge) -> None:
    get = await edge.api.get("/api/v1/shows")
    head = await edge.api.request("HEAD", "/api/v1/shows")
    health = await edge.api.request("HEAD", "/healthz")

    assert head.status == 200
    assert head.body == b""
    assert head.header("content-length") == str(len(get.body))
    assert head.header("content-type") == get.header("content-type")
    assert [c.method for c in edge.upstream.api_calls()] == ["GET", "GET"]
    assert (health.status, health.body) == (200, b"")


async def test_an_encoded_non_ascii_query_reaches_the_service_intact(edge: Edge) -> None:
    answer = await edge.api.get("/api/v1/shows?city=%E4%B8%8A%E6%B5%B7&category=%E6%BC%94")

    assert answer.json()["query"] == {"city": "上海", "category": "演"}


async def test_a_raw_utf8_query_reaches_the_service_escaped(edge: Edge) -> None:
    sent = await raw(edge.gateway, "GET", "/api/v1/shows", query="city=上海".encode())

    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["query"] == {"city": "上海"}


async def test_a_non_ascii_path_reaches_the_service_intact(edge: Edge) -> None:
    answer = await edge.api.get("/api/v1/shows/%E5%91%A8%20x")

    assert answer.json() == {"show_id": "周 x"}


@pytest.mark.parametrize(
    "path",
    ["/internal/users/u-1", "/api/v1/users/internal/u-1", "/api/v1/nothing", "/assets/nope.js"],
)
async def test_internal_and_unknown_paths_are_404_and_never_forwarded(
    edge: Edge, bearer: dict[str, str], path: str
) -> None:
    answer = await edge.api.get(path, headers=bearer)

    assert is_problem(answer, 404, "not_found")
    assert edge.upstream.calls == []


async def test_the_gateways_own_pages_answer_only_reads(edge: Edge) -> None:
    answer = await edge.api.post("/healthz", json={})

    assert is_problem(answer, 405, "method_not_allowed")
    assert answer.header("allow") == "GET, HEAD"


# -- the public API's documentation ---------------------------------------------------------


async def test_the_openapi_document_lists_the_public_paths_and_no_internal_ones(
    edge: Edge,
) -> None:
    answer = await edge.api.get("/openapi.json")

    document = answer.json()
    assert answer.status == 200
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/shows", "/api/v1/orders", "/api/v1/users/me", "/api/v1/auth/login"} <= set(
        document["paths"]
    )
    assert not any("internal" in path for path in document["paths"])
    assert "Order" in document["components"]["schemas"]
    assert document["paths"]["/api/v1/orders"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in document["paths"]["/api/v1/shows"]["get"]


async def test_the_merged_document_is_fetched_once_then_kept(edge: Edge) -> None:
    first = await edge.api.get("/openapi.json")
    second = await edge.api.get("/openapi.json")

    fetches = [c for c in edge.upstream.calls if c.path == "/openapi.json"]
    assert first.body == second.body
    assert len(fetches) == 4  # once per upstream, and never again


async def test_a_service_that_is_down_is_left_out_of_the_document(
    make_edge: Callable[..., Any],
) -> None:
    async with make_edge(down=("notification",)) as edge:
        answer = await edge.api.get("/openapi.json")

    paths = answer.json()["paths"]
    assert answer.status == 200
    assert "/api/v1/shows" in paths
    assert not any(p.startswith("/api/v1/notifications") for p in paths)


async def test_the_docs_page_is_swagger_ui_over_the_merged_document(edge: Edge) -> None:
    answer = await edge.api.get("/docs")

    assert answer.status == 200
    assert (answer.header("content-type") or "").startswith("text/html")
    assert b"swagger-ui" in answer.body
    assert b"/openapi.json" in answer.body


@pytest.mark.parametrize(("page", "marker"), [("/docs", b"swagger-ui"), ("/redoc", b"redoc")])
async def test_the_docs_pages_load_nothing_from_elsewhere_and_their_files_are_served(
    edge: Edge, page: str, marker: bytes
) -> None:
    answer = await edge.api.get(page)
    assert answer.status == 200
    html = answer.body.decode()
    assert marker in answer.body
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(
        r"(?:url|Url): '([^']+)'", html
    )
    assert loaded
    assert all(url.startswith("/") and not url.startswith("//") for url in loaded), loaded
    for url in loaded:
        if url.startswith("/docs/assets/"):
            asset = await edge.api.get(url)
            assert asset.status == 200, url
            assert len(asset.body) > 1000, url
