"""What a rate-limit decision tells the client, as response headers. Pure: no I/O.

Headers follow the IETF RateLimit fields draft in its widely deployed form: ``RateLimit-Limit``
(the burst: requests that may be sent at once), ``RateLimit-Remaining`` (whole requests left
now) and ``RateLimit-Reset`` (seconds until the bucket is full again); a refusal adds
``Retry-After`` (seconds until the next request will be allowed).
"""

from __future__ import annotations

import math

from marquee.platform.cache import RateDecision

# Float sums like 0.1 * 3 land a hair above a whole number; that must not add a second.
_SLACK = 1e-9


def whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to a whole number, ignoring float noise below a nanosecond."""
    return max(0, math.ceil(seconds - _SLACK))


def retry_after(decision: RateDecision) -> int:
    """Seconds a refused client should wait: at least 1, and enough for a token to be back."""
    return max(1, whole_seconds(decision.retry_after))


def rate_limit_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """The ``RateLimit-*`` headers (raw ASGI form) for one decision, allowed or not."""
    return [
        (b"ratelimit-limit", b"%d" % decision.limit),
        (b"ratelimit-remaining", b"%d" % max(0, decision.remaining)),
        (b"ratelimit-reset", b"%d" % whole_seconds(decision.reset_after)),
    ]


def rate_limit_policy(rate: float, burst: int) -> bytes:
    """``RateLimit-Policy``: ``burst`` requests per window, the window being the time an empty
    bucket takes to fill (``burst / rate`` seconds, at least 1)."""
    window = max(1, whole_seconds(burst / rate))
    return b"%d;w=%d" % (burst, window)
