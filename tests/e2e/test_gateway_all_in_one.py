"""The gateway in front of the real services, all in one process (``marquee up``)."""

from __future__ import annotations

from marquee.gateway.app import MAX_BODY_BYTES
from tests.e2e.conftest import Api

PUBLIC_IDENTITY_PATHS = {
    "/api/v1/auth/register",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/users/me",
}


async def test_the_gateway_and_every_service_are_healthy_and_ready(api: Api) -> None:
    health = await api.get("/healthz")
    ready = await api.get("/readyz")

    assert health.json() == {"status": "ok", "service": "gateway"}
    assert ready.status == 200
    assert set(ready.json()["checks"]) == {
        "identity",
        "catalog",
        "booking",
        "notification",
        "cache",
    }


async def test_the_merged_document_publishes_the_public_api_and_nothing_internal(api: Api) -> None:
    document = (await api.get("/openapi.json")).json()

    assert set(document["paths"]) >= PUBLIC_IDENTITY_PATHS
    assert all(path.startswith("/api/v1/") for path in document["paths"])
    assert not any("internal" in path for path in document["paths"])


async def test_a_protected_route_without_a_token_is_a_401_problem(api: Api) -> None:
    for path in ("/api/v1/users/me", "/api/v1/orders", "/api/v1/notifications"):
        answer = await api.get(path)

        assert answer.status == 401, path
        assert (answer.header("www-authenticate") or "").startswith("Bearer")
        assert answer.json()["code"] == "unauthorized"


async def test_internal_endpoints_are_not_reachable_through_the_gateway(api: Api) -> None:
    answer = await api.get("/internal/users/u-1")

    assert answer.status == 404
    assert answer.json()["code"] == "not_found"


async def test_register_then_read_my_profile_through_the_gateway(api: Api) -> None:
    registered = await api.post(
        "/api/v1/auth/register",
        json={"email": "Alice@Example.com", "password": "SecurePass123", "full_name": "Alice"},
        headers={"X-Request-ID": "abc-123"},
    )
    tokens = registered.json()
    me = await api.get("/api/v1/users/me", token=tokens["access_token"])

    assert registered.status == 201, registered.json()
    assert registered.header("x-request-id") == "abc-123"
    assert {"user_id", "access_token", "refresh_token"} <= set(tokens)
    assert me.status == 200
    assert me.json()["user_id"] == tokens["user_id"]


async def test_bad_bodies_on_a_public_route_are_4xx_problems_never_500(api: Api) -> None:
    path = "/api/v1/auth/register"
    json_header = {"Content-Type": "application/json"}
    malformed = await api.post(path, body=b'{"email": ', headers=json_header)
    wrong_type = await api.post(
        path, json={"email": "b@example.com", "password": 12345678, "full_name": ["B"]}
    )
    unknown = await api.post(
        path,
        json={"email": "c@example.com", "password": "SecurePass123", "full_name": "C", "x": 1},
    )
    huge = await api.post(path, body=b"x" * (MAX_BODY_BYTES + 1), headers=json_header)

    assert [a.status for a in (malformed, wrong_type, unknown, huge)] == [400, 422, 422, 413]
    for answer in (malformed, wrong_type, unknown, huge):
        assert answer.header("content-type") == "application/problem+json"
