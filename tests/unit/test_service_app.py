"""The app factory every service shares: health, request IDs, problem details, body limits."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import Message, Receive, Scope, Send

from marquee.platform.app import RequestContextMiddleware, create_service_app
from marquee.platform.kernel import Kernel
from marquee.platform.problems import Problem
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport, ServiceClient, ServiceError

router = APIRouter()


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    quantity: int


@router.post("/echo")
async def echo(body: Echo) -> Echo:
    return body


@router.get("/conflict")
async def conflict() -> None:
    raise Problem(409, "sold_out", "Nothing left.", available=0)


@router.get("/pool-exhausted")
async def pool_exhausted() -> None:
    raise PoolTimeoutError("QueuePool limit of size 1 overflow 0 reached")


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("bug")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsgiTransport]:
    app = create_service_app(
        "catalog",
        Kernel.from_settings(settings),
        routers=[router],
        migrations=Path(__file__).parents[2] / "src/marquee/catalog/migrations",
    )
    async with LifespanManager(app):
        yield AsgiTransport(app)


async def test_health_and_readiness_answer(client: AsgiTransport) -> None:
    assert (await client.request("GET", "/healthz")).json()["status"] == "ok"
    ready = (await client.request("GET", "/readyz")).json()
    assert ready["checks"] == {"cache": "ok", "broker": "ok", "database": "ok"}


async def test_a_well_formed_request_id_is_kept_and_echoed(client: AsgiTransport) -> None:
    answer = await client.request("GET", "/healthz", headers=[("X-Request-ID", "abc-123")])
    assert answer.header("x-request-id") == "abc-123"


async def test_a_malformed_request_id_is_replaced(client: AsgiTransport) -> None:
    answer = await client.request("GET", "/healthz", headers=[("X-Request-ID", "bad id\u00e9")])
    rid = answer.header("x-request-id")
    assert rid
    assert rid != "bad id\u00e9"
    assert len(rid) == 32


async def test_domain_problems_become_problem_details(client: AsgiTransport) -> None:
    answer = await client.request("GET", "/conflict", headers=[("X-Request-ID", "r-1")])
    assert answer.status == 409
    assert answer.header("content-type") == "application/problem+json"
    body = answer.json()
    assert body["code"] == "sold_out"
    assert body["available"] == 0
    assert body["request_id"] == "r-1"
    assert body["status"] == 409


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b'{"name": "x", "quantity": "many"}', 422, "validation_error"),
        (b'{"name": "x"}', 422, "validation_error"),
        (b'{"name": "x", "quantity": 1, "extra": true}', 422, "validation_error"),
        (b"[]", 422, "validation_error"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    client: AsgiTransport, body: bytes, status: int, code: str
) -> None:
    answer = await client.request(
        "POST", "/echo", body=body, headers=[("content-type", "application/json")]
    )
    assert answer.status == status
    assert answer.json()["code"] == code
    assert answer.json()["detail"]


async def test_a_huge_body_is_refused_with_413(client: AsgiTransport) -> None:
    answer = await client.request(
        "POST",
        "/echo",
        body=b"x" * (2 * 1024 * 1024),
        headers=[("content-type", "application/json")],
    )
    assert answer.status == 413
    assert answer.json()["code"] == "payload_too_large"


async def test_an_unexpected_error_is_a_problem_without_internals(client: AsgiTransport) -> None:
    answer = await client.request("GET", "/boom")
    assert answer.status == 500
    assert answer.json()["code"] == "internal_error"
    assert "bug" not in answer.body.decode()


async def test_unknown_routes_are_404_problems(client: AsgiTransport) -> None:
    answer = await client.request("GET", "/nope")
    assert answer.status == 404
    assert answer.json()["code"] == "not_found"


async def test_the_typed_client_raises_service_errors(client: AsgiTransport) -> None:
    service = ServiceClient(client)
    assert await service.call("POST", "/echo", json={"name": "上海", "quantity": 2}) == {
        "name": "上海",
        "quantity": 2,
    }
    with pytest.raises(ServiceError) as caught:
        await service.call("GET", "/conflict")
    assert caught.value.status == 409
    assert caught.value.code == "sold_out"


async def test_metrics_count_requests_by_route_template(client: AsgiTransport) -> None:
    await client.request("GET", "/conflict")
    await client.request("GET", "/conflict")
    scrape = (await client.request("GET", "/metrics")).body.decode()
    line = next(
        line
        for line in scrape.splitlines()
        if line.startswith("marquee_http_requests_total{")
        and 'route="/conflict"' in line
        and 'status="409"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2


async def test_an_unexpected_error_still_carries_the_request_id(client: AsgiTransport) -> None:
    answer = await client.request("GET", "/boom", headers=[("X-Request-ID", "trace-500")])
    assert answer.json()["request_id"] == "trace-500"


async def test_a_raw_utf8_query_reads_like_the_encoded_form() -> None:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["query_string"])

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        return None

    middleware = RequestContextMiddleware(app, service="catalog")
    for query in ["city=上海&q=a%20b".encode(), b"city=%E4%B8%8A%E6%B5%B7&page=2"]:
        await middleware({"type": "http", "query_string": query, "headers": []}, receive, send)
    assert seen == [b"city=%E4%B8%8A%E6%B5%B7&q=a%20b", b"city=%E4%B8%8A%E6%B5%B7&page=2"]


async def test_an_exhausted_connection_pool_is_a_503_worth_retrying(
    client: AsgiTransport,
) -> None:
    answer = await client.request("GET", "/pool-exhausted")

    assert answer.status == 503
    assert answer.json()["code"] == "database_busy"
    assert answer.header("retry-after") == "1"
