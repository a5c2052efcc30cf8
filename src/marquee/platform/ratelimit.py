"""Token-bucket arithmetic, pure: the one definition both cache adapters implement."""

from __future__ import annotations

import math
from dataclasses import dataclass

from marquee.platform.cache import RateDecision


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket's saved state: ``tokens`` held as of ``updated_at`` (seconds, any clock)."""

    tokens: float
    updated_at: float


def check_limits(*, rate: float, burst: int, cost: int) -> None:
    """Raise ValueError unless ``rate`` is positive and finite and ``1 <= cost <= burst``."""
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of tokens a second, not {rate!r}")
    if not 1 <= cost <= burst:
        raise ValueError(f"need 1 <= cost <= burst, got cost={cost!r} burst={burst!r}")


def take(
    bucket: Bucket | None, *, now: float, rate: float, burst: int, cost: int = 1
) -> tuple[Bucket, RateDecision]:
    """Refill ``bucket`` up to ``now``, try to spend ``cost`` tokens, return the new state.

    A missing bucket (never seen, or expired) is a full one. The bucket gains ``rate`` tokens a
    second and never holds more than ``burst``. The request is allowed iff the refilled bucket
    holds at least ``cost`` tokens, which are then spent; a refusal spends nothing.

    The decision reports ``limit`` = ``burst``, ``remaining`` = whole tokens left,
    ``retry_after`` = seconds until ``cost`` tokens will be there (0 when allowed, > 0 when
    refused) and ``reset_after`` = seconds until the bucket is full again.

    A clock that steps backwards refills nothing and does not move ``updated_at`` back, so the
    time between the old and the new reading is never counted twice: over any run of calls the
    tokens granted never exceed ``burst + rate * (latest now - first now)``.

    Raises ValueError unless ``rate > 0`` and ``1 <= cost <= burst`` (a cost above the burst
    could never be paid).
    """
    check_limits(rate=rate, burst=burst, cost=cost)
    if bucket is None:
        tokens, updated_at = float(burst), now
    else:
        elapsed = max(0.0, now - bucket.updated_at)
        tokens = min(float(burst), bucket.tokens + elapsed * rate)
        updated_at = max(now, bucket.updated_at)

    allowed = tokens >= cost
    if allowed:
        tokens -= cost
        retry_after = 0.0
    else:
        retry_after = (cost - tokens) / rate
    decision = RateDecision(
        allowed=allowed,
        limit=burst,
        remaining=math.floor(tokens),
        retry_after=retry_after,
        reset_after=(burst - tokens) / rate,
    )
    return Bucket(tokens=tokens, updated_at=updated_at), decision
