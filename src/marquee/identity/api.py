"""Identity's HTTP routes: parse, call one use case, answer. Domain errors become problem
details through the one table below."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from starlette.responses import Response

from marquee.identity.client import Profile
from marquee.identity.domain import (
    EmailTakenError,
    IdentityError,
    InvalidCredentialsError,
    InvalidEmailError,
    InvalidLocaleError,
    InvalidNameError,
    InvalidPhoneError,
    RefreshTokenExpiredError,
    RefreshTokenInvalidError,
    RefreshTokenReusedError,
    RefreshTokenRevokedError,
    TooManyAttemptsError,
    UserNotFoundError,
    WeakPasswordError,
    locale_from_accept_language,
)
from marquee.identity.schemas import (
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UpdateProfileRequest,
    UserPage,
    UserProfile,
)
from marquee.identity.service import UNSET, IdentityService, NewAccount, ProfileChanges, TokenPair
from marquee.platform.auth import AdminUser, CurrentUser
from marquee.platform.contract import errors
from marquee.platform.problems import Problem, problem_response

log = logging.getLogger("marquee.identity")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="marquee"'}

# The one place a domain error gets its HTTP status and problem code.
ERRORS: dict[type[IdentityError], tuple[int, str]] = {
    InvalidEmailError: (422, "invalid_email"),
    WeakPasswordError: (422, "weak_password"),
    InvalidNameError: (422, "invalid_full_name"),
    InvalidPhoneError: (422, "invalid_phone"),
    InvalidLocaleError: (422, "invalid_locale"),
    EmailTakenError: (409, "email_taken"),
    InvalidCredentialsError: (401, "invalid_credentials"),
    TooManyAttemptsError: (429, "too_many_attempts"),
    UserNotFoundError: (404, "user_not_found"),
    RefreshTokenInvalidError: (401, "invalid_refresh_token"),
    RefreshTokenExpiredError: (401, "refresh_token_expired"),
    RefreshTokenRevokedError: (401, "refresh_token_revoked"),
    RefreshTokenReusedError: (401, "refresh_token_reused"),
}


def problem_for(exc: IdentityError) -> Problem:
    """The problem details answering ``exc`` (a 500 for an error missing from the table)."""
    status, code = next(
        (ERRORS[kind] for kind in type(exc).__mro__ if kind in ERRORS), (500, "internal_error")
    )
    headers: dict[str, str] = dict(_CHALLENGE) if status == 401 else {}
    extra: dict[str, Any] = {}
    if isinstance(exc, TooManyAttemptsError):
        retry = max(1, math.ceil(exc.retry_after))
        headers["Retry-After"] = str(retry)
        extra["retry_after"] = retry
    if isinstance(exc, WeakPasswordError):
        extra["reasons"] = list(exc.reasons)
    return Problem(status, code, str(exc), headers=headers, **extra)


def install_error_table(app: FastAPI) -> None:
    """Answer every IdentityError a route lets escape through ``ERRORS``."""

    async def on_identity_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IdentityError)
        problem = problem_for(exc)
        return problem_response(
            problem.status, problem.code, problem.detail, headers=problem.headers, **problem.extra
        )

    app.add_exception_handler(IdentityError, on_identity_error)


async def identity_service(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity
    return service


Identity = Annotated[IdentityService, Depends(identity_service)]

router = APIRouter(prefix="/api/v1")


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        user_id=pair.user_id,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )


@router.post("/auth/register", status_code=201, tags=["auth"], responses=errors(409, 422))
async def register(
    body: RegisterRequest,
    identity: Identity,
    accept_language: Annotated[str | None, Header(max_length=1000)] = None,
) -> TokenResponse:
    """Open a customer account and sign it in. Its language (for emails) is the first of
    the request's Accept-Language that Marquee writes in (Chinese or English), else zh-CN;
    PATCH /users/me changes it."""
    cmd = NewAccount(
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        phone=body.phone,
        locale=locale_from_accept_language(accept_language),
    )
    return _tokens(await identity.register(cmd))


@router.post("/auth/login", tags=["auth"], responses=errors(401, 429))
async def login(body: LoginRequest, identity: Identity) -> TokenResponse:
    """Sign in with email and password."""
    return _tokens(await identity.login(body.email, body.password))


@router.post("/auth/refresh", tags=["auth"], responses=errors(401))
async def refresh(body: RefreshRequest, identity: Identity) -> TokenResponse:
    """Trade a refresh token for a new pair; the presented one stops working."""
    return _tokens(await identity.refresh(body.refresh_token))


@router.post("/auth/logout", status_code=204, tags=["auth"], responses=errors(401))
async def logout(body: LogoutRequest, identity: Identity) -> Response:
    """Sign out the session the refresh token belongs to (every token of its family)."""
    await identity.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/users/me", tags=["users"], responses=errors(401, 404))
async def me(user: CurrentUser, identity: Identity) -> UserProfile:
    return UserProfile.of(await identity.profile(user.user_id))


@router.patch("/users/me", tags=["users"], responses=errors(401, 404, 422))
async def update_me(
    body: UpdateProfileRequest, user: CurrentUser, identity: Identity
) -> UserProfile:
    """Change the given fields of the caller's profile."""
    given = body.model_fields_set
    changes = ProfileChanges(
        full_name=body.full_name if "full_name" in given and body.full_name is not None else UNSET,
        phone=body.phone if "phone" in given else UNSET,
        locale=body.locale if "locale" in given and body.locale is not None else UNSET,
    )
    return UserProfile.of(await identity.update_profile(user.user_id, changes))


@router.get("/admin/users", tags=["admin"], responses=errors(401, 403))
async def list_users(
    admin: AdminUser,
    identity: Identity,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> UserPage:
    """Every account, newest first, a page at a time."""
    users, total = await identity.list_users(limit=limit, offset=offset)
    return UserPage(
        users=[UserProfile.of(user) for user in users], total=total, limit=limit, offset=offset
    )


internal = APIRouter(prefix="/internal", include_in_schema=False)


@internal.get("/users/{user_id}")
async def get_profile(user_id: str, identity: Identity) -> Profile:
    """GetProfile, for other services (Booking verifies buyers with it); never public."""
    started = time.perf_counter()
    try:
        user = await identity.profile(user_id)
    finally:
        log.info(
            "GetProfile user=%s duration=%dms", user_id, (time.perf_counter() - started) * 1000
        )
    return Profile(
        user_id=user.id,
        email=user.email,
        full_name=user.full_name,
        phone=user.phone,
        role=user.role,
        locale=user.locale,
    )
