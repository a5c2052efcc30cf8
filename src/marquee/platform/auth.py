"""Access tokens: issued by Identity, verified locally by every service and the gateway.

HS256 with ``MARQUEE_JWT_SECRET`` (generated under the data dir when unset): verification is a
hash, so no service calls Identity to know who is asking.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import jwt
from fastapi import Depends, Request

from marquee.platform.problems import Problem

Role = Literal["customer", "admin"]
ISSUER = "marquee"
ALGORITHM = "HS256"


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the access token says."""

    user_id: str
    role: Role
    email: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class TokenService:
    """Signs and verifies JWTs. ``kind`` keeps access and refresh tokens from standing in for
    each other."""

    def __init__(self, secret: str, *, access_ttl: int = 900, refresh_ttl: int = 30 * 86400):
        if len(secret) < 16:
            raise ValueError("MARQUEE_JWT_SECRET must be at least 16 characters")
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(
        self,
        *,
        subject: str,
        kind: Literal["access", "refresh"],
        claims: dict[str, Any] | None = None,
        now: float | None = None,
        ttl: int | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        lifetime = (
            ttl if ttl is not None else (self.access_ttl if kind == "access" else self.refresh_ttl)
        )
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "typ": kind,
            "iat": issued,
            "exp": issued + lifetime,
            "jti": uuid.uuid4().hex,
            **(claims or {}),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, *, kind: Literal["access", "refresh"]) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.PyJWTError:
            raise TokenError("token invalid") from None
        if claims.get("typ") != kind:
            raise TokenError(f"not an {kind} token")
        return claims

    def issue_access(self, user_id: str, role: Role, email: str = "") -> str:
        return self.issue(subject=user_id, kind="access", claims={"role": role, "email": email})

    def principal(self, token: str) -> Principal:
        """Same as ``verify_access``: lets a TokenService stand where a verifier is expected."""
        return self.verify_access(token)

    def verify_access(self, token: str) -> Principal:
        claims = self.decode(token, kind="access")
        role = claims.get("role")
        if role not in ("customer", "admin"):
            raise TokenError("token invalid")
        return Principal(user_id=str(claims["sub"]), role=role, email=str(claims.get("email", "")))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="marquee", error="invalid_token"'},
    )


class AccessVerifier(Protocol):
    def principal(self, token: str) -> Principal: ...


def authenticate(verifier: AccessVerifier, authorization: str | None) -> Principal:
    """The caller from an ``Authorization: Bearer`` header, or a 401 problem."""
    token = bearer_token(authorization)
    if token is None:
        raise Problem(
            401,
            "unauthorized",
            "Sign in first: send Authorization: Bearer <access token>.",
            headers={"WWW-Authenticate": 'Bearer realm="marquee"'},
        )
    try:
        return verifier.principal(token)
    except TokenError as exc:
        raise unauthorized(
            f"The access token is not valid ({exc}); refresh it or sign in."
        ) from None


def tokens_of(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.kernel.tokens
    return tokens


def verifier_of(request: Request) -> AccessVerifier:
    """This process's verifier, which remembers tokens it has already checked."""
    verifier: AccessVerifier = request.app.state.kernel.verified
    return verifier


# Dependencies are coroutines even when they never await: FastAPI runs a plain ``def``
# dependency in a worker thread, a thread hand-off on every request.
async def current_user(request: Request) -> Principal:
    return authenticate(verifier_of(request), request.headers.get("authorization"))


async def current_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not user.is_admin:
        raise Problem(403, "forbidden", "This needs the admin role.")
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(current_admin)]
