"""The gateway in distributed mode: real processes on PostgreSQL, Redis and NATS.

Two gateway processes in front of one process per service (tests/e2e/cluster.py). Requests
come from 127.0.0.1, a trusted proxy here, so each test names its own client address in
X-Forwarded-For and does not share a rate limit with the others.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.e2e.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.nats]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), gateways=2) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client_ip() -> str:
    """A documentation-range address no other test uses."""
    n = uuid.uuid4().int
    return f"198.51.{100 + n % 2}.{1 + (n >> 8) % 254}"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    ip: str,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, CIMultiDict[str], Any]:
    send = {"X-Forwarded-For": ip, **(headers or {})}
    async with http.request(method, url, json=json, headers=send) as answer:
        body = await answer.json(content_type=None) if await answer.read() else None
        return answer.status, CIMultiDict(answer.headers), body


async def test_every_gateway_is_ready_with_every_upstream_reachable(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    for gateway in cluster.gateways:
        status, _, body = await call(http, "GET", f"{gateway}/readyz", ip=client_ip())

        assert status == 200, body
        assert set(body["checks"]) == {"identity", "catalog", "booking", "notification", "cache"}


async def test_the_merged_openapi_document_comes_from_the_services_over_http(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    status, _, document = await call(
        http, "GET", f"{cluster.gateways[0]}/openapi.json", ip=client_ip()
    )

    assert status == 200
    assert {"/api/v1/auth/register", "/api/v1/users/me"} <= set(document["paths"])
    assert not any("internal" in path for path in document["paths"])


async def test_two_gateways_share_one_rate_limit_through_redis(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    first, second = cluster.gateways
    # Open enough connections to both gateways first, so the burst below is not spread out
    # by connection set-up (the bucket refills one request every 100 ms).
    warm_up = client_ip()
    await asyncio.gather(
        *(call(http, "GET", f"{g}/healthz", ip=warm_up) for g in (first, second) * 6)
    )
    ip = client_ip()

    # Seven to each gateway: with a bucket per gateway (burst 10) none would be refused.
    answers = await asyncio.gather(
        *(call(http, "GET", f"{(first, second)[i % 2]}/api/v1/orders", ip=ip) for i in range(14))
    )
    other = await call(http, "GET", f"{second}/api/v1/orders", ip=client_ip())

    statuses = sorted(status for status, _, _ in answers)
    # Ten at once, then refusals; the bucket refills one request every 100 ms, so a slow
    # machine may let an eleventh or twelfth through while the fourteen arrive.
    assert set(statuses) == {401, 429}
    assert 10 <= statuses.count(401) <= 12
    _, headers, body = next(a for a in answers if a[0] == 429)
    assert body["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Limit"] == "10"
    assert other[0] == 401


async def test_a_protected_route_without_a_token_is_refused_at_the_edge(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    status, headers, body = await call(
        http, "GET", f"{cluster.gateways[0]}/api/v1/users/me", ip=client_ip()
    )

    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert body["code"] == "unauthorized"


async def test_internal_endpoints_are_not_reachable(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    status, _, body = await call(
        http, "GET", f"{cluster.gateways[1]}/internal/users/u-1", ip=client_ip()
    )

    assert status == 404
    assert body["code"] == "not_found"


async def test_register_then_read_my_profile_with_the_request_id_in_identitys_log(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    first, second = cluster.gateways
    request_id = f"cluster-{uuid.uuid4().hex[:12]}"
    email = f"alice-{uuid.uuid4().hex[:8]}@example.com"
    ip = client_ip()

    status, headers, tokens = await call(
        http,
        "POST",
        f"{first}/api/v1/auth/register",
        ip=ip,
        json={"email": email, "password": "SecurePass123", "full_name": "Alice Wang"},
        headers={"X-Request-ID": request_id},
    )
    me_status, _, me = await call(
        http,
        "GET",
        f"{second}/api/v1/users/me",
        ip=ip,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )

    assert status == 201, tokens
    assert headers["X-Request-ID"] == request_id
    assert me_status == 200
    assert me["user_id"] == tokens["user_id"]
    assert f"[{request_id}] Registered user={tokens['user_id']}" in cluster.log("identity")
    assert f"[{request_id}] POST /api/v1/auth/register status=201" in cluster.log("gateway")


async def test_a_bad_body_is_a_problem_from_the_service_carrying_the_request_id(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    request_id = f"cluster-{uuid.uuid4().hex[:12]}"
    async with http.post(
        f"{cluster.gateways[0]}/api/v1/auth/register",
        data=b'{"email": ',
        headers={
            "Content-Type": "application/json",
            "X-Request-ID": request_id,
            "X-Forwarded-For": client_ip(),
        },
    ) as answer:
        body = await answer.json(content_type=None)

    assert answer.status == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    # Written by Identity, passed through unchanged: Identity saw the gateway's request ID.
    assert body["code"] == "malformed_json"
    assert body["request_id"] == request_id
