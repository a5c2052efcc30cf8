"""Accounts and tokens through the gateway, as a person's client uses them (seed scenario 1)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from marquee.gateway.app import Gateway
from marquee.identity.client import IdentityClient
from marquee.platform.auth import TokenService
from marquee.platform.context import request_id_var
from marquee.platform.logging import RequestIdFilter, SeedFormatter
from marquee.platform.settings import Settings
from marquee.platform.transport import Response, ServiceError
from tests.e2e.conftest import Api

ALICE = {"email": "alice@example.com", "password": "SecurePass123", "full_name": "Alice Wang"}


def problem(answer: Response, status: int, code: str) -> dict[str, Any]:
    """The answer's problem details, after checking it is the expected one."""
    body: dict[str, Any] = answer.json()
    assert (answer.status, body.get("code")) == (status, code), body
    assert answer.header("content-type") == "application/problem+json"
    return body


async def sign_up(api: Api, **fields: str) -> dict[str, Any]:
    answer = await api.post("/api/v1/auth/register", json={**ALICE, **fields})
    assert answer.status == 201, answer.json()
    body: dict[str, Any] = answer.json()
    return body


async def test_a_customer_registers_signs_in_refreshes_and_signs_out(
    api: Api, e2e_settings: Settings
) -> None:
    registered = await sign_up(api)
    assert set(registered) >= {"user_id", "access_token", "refresh_token"}
    assert registered["token_type"] == "Bearer"
    assert registered["expires_in"] == e2e_settings.access_token_ttl_seconds

    login = await api.post(
        "/api/v1/auth/login", json={"email": " Alice@Example.com", "password": "SecurePass123"}
    )
    assert login.status == 200
    session = login.json()
    assert session["user_id"] == registered["user_id"]

    me = await api.get("/api/v1/users/me", token=session["access_token"])
    assert me.status == 200
    profile = me.json()
    assert {k: profile[k] for k in ("user_id", "email", "full_name", "phone", "role")} == {
        "user_id": registered["user_id"],
        "email": "alice@example.com",
        "full_name": "Alice Wang",
        "phone": None,
        "role": "customer",
    }
    assert profile["created_at"].endswith("Z")

    rotated = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert rotated.status == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != session["refresh_token"]
    assert (await api.get("/api/v1/users/me", token=fresh["access_token"])).status == 200

    # The old refresh token again: someone kept a copy, so that whole session ends.
    reused = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    problem(reused, 401, "refresh_token_reused")
    revoked = await api.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    problem(revoked, 401, "refresh_token_revoked")

    # The registration's own session was another family and still works until signed out.
    logout = await api.post(
        "/api/v1/auth/logout", json={"refresh_token": registered["refresh_token"]}
    )
    assert logout.status == 204
    assert logout.body == b""
    after = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    problem(after, 401, "refresh_token_revoked")
    again = await api.post(
        "/api/v1/auth/logout", json={"refresh_token": registered["refresh_token"]}
    )
    assert again.status == 204


async def test_an_email_can_be_registered_only_once(api: Api) -> None:
    await sign_up(api)
    twice = await api.post("/api/v1/auth/register", json={**ALICE, "email": "ALICE@example.com"})
    problem(twice, 409, "email_taken")


async def test_a_weak_password_is_refused_with_the_reasons(api: Api) -> None:
    answer = await api.post("/api/v1/auth/register", json={**ALICE, "password": "password"})
    body = problem(answer, 422, "weak_password")
    assert body["reasons"] == [
        "must contain a digit",
        "is one of the commonest passwords in public data breaches",
    ]
    assert "must contain a digit" in body["detail"]


async def test_a_password_from_the_breach_lists_is_refused_though_it_meets_the_rest(
    api: Api,
) -> None:
    answer = await api.post("/api/v1/auth/register", json={**ALICE, "password": "password1"})
    body = problem(answer, 422, "weak_password")
    assert body["reasons"] == ["is one of the commonest passwords in public data breaches"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"email": "alice@"}, "invalid_email"),
        ({"phone": "13812345678"}, "invalid_phone"),
        ({"full_name": "   "}, "invalid_full_name"),
    ],
)
async def test_invalid_account_details_are_refused(
    api: Api, fields: dict[str, str], code: str
) -> None:
    problem(await api.post("/api/v1/auth/register", json={**ALICE, **fields}), 422, code)


async def test_malformed_json_is_a_bad_request(api: Api) -> None:
    answer = await api.post(
        "/api/v1/auth/register",
        body=b'{"email": "alice@example.com", ',
        headers={"Content-Type": "application/json"},
    )
    problem(answer, 400, "malformed_json")


@pytest.mark.parametrize(
    "body",
    [
        {"email": 42, "password": "SecurePass123", "full_name": "Alice"},
        {"email": "alice@example.com", "password": ["SecurePass123"], "full_name": "Alice"},
        {"email": "alice@example.com", "password": "SecurePass123", "full_name": None},
        {"email": "alice@example.com", "password": "SecurePass123"},
        ["alice@example.com", "SecurePass123", "Alice"],
    ],
    ids=["number-email", "list-password", "null-name", "missing-name", "array-body"],
)
async def test_wrong_types_and_missing_fields_are_validation_errors(api: Api, body: Any) -> None:
    problem(await api.post("/api/v1/auth/register", json=body), 422, "validation_error")


async def test_unknown_fields_are_refused_so_nobody_registers_as_admin(api: Api) -> None:
    answer = await api.post("/api/v1/auth/register", json={**ALICE, "role": "admin"})
    body = problem(answer, 422, "validation_error")
    assert "role" in body["detail"]


async def test_a_huge_body_is_refused_before_it_is_read(api: Api) -> None:
    huge = {**ALICE, "full_name": "x" * (2 * 1024 * 1024)}
    problem(await api.post("/api/v1/auth/register", json=huge), 413, "payload_too_large")


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(api: Api) -> None:
    await sign_up(api)
    wrong_password = await api.post(
        "/api/v1/auth/login", json={"email": ALICE["email"], "password": "Wrong12345"}
    )
    unknown_email = await api.post(
        "/api/v1/auth/login", json={"email": "bob@example.com", "password": "SecurePass123"}
    )
    bodies = [
        problem(answer, 401, "invalid_credentials") for answer in (wrong_password, unknown_email)
    ]
    for body in bodies:
        body.pop("request_id")
    assert bodies[0] == bodies[1]
    assert wrong_password.header("www-authenticate") == unknown_email.header("www-authenticate")


async def test_repeated_wrong_passwords_throttle_the_account(api: Api) -> None:
    await sign_up(api)
    for attempt in range(5):
        answer = await api.post(
            "/api/v1/auth/login",
            json={"email": ALICE["email"], "password": f"Guess{attempt}xyz"},
            ip=f"10.0.0.{attempt}",  # changing address does not help: the account is throttled
        )
        problem(answer, 401, "invalid_credentials")
    throttled = await api.post(
        "/api/v1/auth/login", json={"email": ALICE["email"], "password": ALICE["password"]}
    )
    body = problem(throttled, 429, "too_many_attempts")
    retry_after = throttled.header("retry-after")
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 900
    assert body["retry_after"] == int(retry_after)


async def test_the_bootstrapped_admin_gets_an_admin_token(api: Api, e2e_settings: Settings) -> None:
    answer = await api.post(
        "/api/v1/auth/login",
        json={"email": e2e_settings.admin_email, "password": e2e_settings.admin_password},
    )
    assert answer.status == 200
    admin_token = answer.json()["access_token"]
    principal = TokenService(e2e_settings.resolved_jwt_secret()).verify_access(admin_token)
    assert principal.role == "admin"

    customer = await sign_up(api)
    listing = await api.get("/api/v1/admin/users?limit=1", token=admin_token)
    assert listing.status == 200
    page = listing.json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 0)
    assert [user["email"] for user in page["users"]] == [ALICE["email"]]
    refused = await api.get("/api/v1/admin/users", token=customer["access_token"])
    problem(refused, 403, "forbidden")


async def test_a_customer_changes_their_own_profile(api: Api) -> None:
    token = (await sign_up(api, phone="+86 138 1234 5678"))["access_token"]
    changed = await api.patch(
        "/api/v1/users/me", json={"full_name": "Alice W.", "locale": "en-gb"}, token=token
    )
    assert changed.status == 200
    assert {k: changed.json()[k] for k in ("full_name", "phone", "locale")} == {
        "full_name": "Alice W.",
        "phone": "+8613812345678",
        "locale": "en-GB",
    }
    cleared = await api.patch("/api/v1/users/me", json={"phone": None}, token=token)
    assert cleared.json()["phone"] is None
    problem(
        await api.patch("/api/v1/users/me", json={"full_name": None}, token=token),
        422,
        "validation_error",
    )
    problem(
        await api.patch("/api/v1/users/me", json={"role": "admin"}, token=token),
        422,
        "validation_error",
    )
    problem(
        await api.patch("/api/v1/users/me", json={"phone": "call me"}, token=token),
        422,
        "invalid_phone",
    )
    me = await api.get("/api/v1/users/me", token=token)
    assert me.json()["role"] == "customer"


async def test_the_profile_needs_a_valid_access_token(api: Api) -> None:
    registered = await sign_up(api)
    for token in (None, registered["refresh_token"], "forged.token.here"):
        answer = await api.get("/api/v1/users/me", token=token)
        assert answer.status == 401
        assert answer.header("www-authenticate")


async def test_get_profile_is_internal_only(api: Api) -> None:
    registered = await sign_up(api)
    answer = await api.get(f"/internal/users/{registered['user_id']}")
    assert answer.status == 404


@pytest.fixture
def identity_log() -> Iterator[list[str]]:
    """Identity's log lines as the platform writes them (seed format, request ID included)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(logging.INFO)
    handler.setFormatter(SeedFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("marquee.identity")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_get_profile_logs_the_callers_request_id(api: Api, identity_log: list[str]) -> None:
    registered = await sign_up(api, phone="+8613812345678")
    gateway = api.transport.app
    assert isinstance(gateway, Gateway)
    client = IdentityClient(gateway.upstreams["identity"])
    token = request_id_var.set("abc-123")
    try:
        profile = await client.get_profile(registered["user_id"])
        with pytest.raises(ServiceError) as missing:
            await client.get_profile("0" * 32)
    finally:
        request_id_var.reset(token)
    assert (profile.user_id, profile.email, profile.full_name, profile.phone, profile.role) == (
        registered["user_id"],
        "alice@example.com",
        "Alice Wang",
        "+8613812345678",
        "customer",
    )
    assert profile.locale == "zh-CN"
    assert (missing.value.status, missing.value.code) == (404, "user_not_found")
    served = [line for line in identity_log if "] GetProfile user=" in line]
    assert len(served) == 2
    assert re.fullmatch(
        rf"\S+Z \[abc-123\] GetProfile user={registered['user_id']} duration=\d+ms", served[0]
    )
