"""Access tokens already verified in this process, remembered until they expire.

A session sends the same access token on every request, and checking a JWT's signature and
claims costs far more than the rest of the work on most requests. Only successes are
remembered, each until its own ``exp``, so a cached answer is exactly what verifying again
would say; a forged or expired token is checked in full every time.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import orjson

from marquee.platform.auth import Principal, TokenService

DEFAULT_SIZE = 10_000


def _expiry(token: str) -> float:
    """The ``exp`` claim of a token whose signature has just been verified."""
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return float(claims["exp"])


class VerifiedTokens:
    """``principal(token)`` is ``tokens.verify_access(token)``, remembered until expiry.

    At most ``size`` tokens are kept; beyond that the oldest is forgotten first. ``clock``
    must be the wall clock the tokens' ``exp`` is measured by (seconds since the epoch).
    """

    def __init__(
        self,
        tokens: TokenService,
        *,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size!r}")
        self._tokens = tokens
        self._size = size
        self._clock = clock
        self._seen: dict[str, tuple[Principal, float]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def principal(self, token: str) -> Principal:
        """Who ``token`` says is calling; raises TokenError when it is not a valid access token."""
        seen = self._seen.get(token)
        if seen is not None:
            principal, expires = seen
            if self._clock() < expires:
                return principal
            del self._seen[token]
        principal = self._tokens.verify_access(token)
        try:
            expires = _expiry(token)
        except (ValueError, KeyError, IndexError, TypeError):
            # verify_access has accepted it, so this cannot happen with PyJWT; if it ever
            # does, the token is still good for this request, just not remembered.
            return principal
        if len(self._seen) >= self._size:
            del self._seen[next(iter(self._seen))]
        self._seen[token] = (principal, expires)
        return principal
