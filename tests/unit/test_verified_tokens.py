"""Remembered token verifications: the same answers as verifying again, only cheaper."""

from __future__ import annotations

import time
from typing import Any

import pytest

from marquee.platform.auth import Principal, TokenError, TokenService
from marquee.platform.verified import VerifiedTokens

SECRET = "unit-test-secret-" + "q" * 32


class CountingTokens(TokenService):
    def __init__(self) -> None:
        super().__init__(SECRET, access_ttl=900)
        self.verified = 0

    def verify_access(self, token: str) -> Principal:
        self.verified += 1
        return super().verify_access(token)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def access(tokens: TokenService, user: str = "u-1", *, issued: float, **kw: Any) -> str:
    return tokens.issue(subject=user, kind="access", claims={"role": "customer"}, now=issued, **kw)


@pytest.fixture
def tokens() -> CountingTokens:
    return CountingTokens()


def test_a_token_seen_before_is_not_verified_again(tokens: CountingTokens) -> None:
    verified = VerifiedTokens(tokens)
    token = tokens.issue_access("u-1", "admin", "a@example.com")

    first = verified.principal(token)
    second = verified.principal(token)

    assert first == second == Principal("u-1", "admin", "a@example.com")
    assert tokens.verified == 1


def test_a_remembered_token_is_checked_in_full_again_once_its_expiry_passes(
    tokens: CountingTokens,
) -> None:
    issued = float(int(time.time()))  # JWT times are whole seconds
    token = access(tokens, issued=issued, ttl=60)
    clock = Clock(issued)
    verified = VerifiedTokens(tokens, clock=clock)

    verified.principal(token)
    clock.now = issued + 59.9
    verified.principal(token)
    clock.now = issued + 60
    verified.principal(token)  # PyJWT reads the real clock, so it still accepts the token

    assert tokens.verified == 2


def test_failures_are_never_remembered(tokens: CountingTokens) -> None:
    verified = VerifiedTokens(tokens)
    forged = TokenService("someone-else-" + "z" * 32).issue_access("u-1", "admin")

    for _ in range(3):
        with pytest.raises(TokenError):
            verified.principal(forged)

    assert tokens.verified == 3
    assert len(verified) == 0


def test_no_more_than_size_tokens_are_kept_oldest_first_out(tokens: CountingTokens) -> None:
    verified = VerifiedTokens(tokens, size=2)
    a, b, c = (tokens.issue_access(user, "customer") for user in ("a", "b", "c"))

    for token in (a, b, c):
        verified.principal(token)
    verified.principal(b)
    verified.principal(c)
    verified.principal(a)

    assert len(verified) == 2
    assert tokens.verified == 4  # a, b, c, then a again after it was pushed out
