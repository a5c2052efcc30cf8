"""Marquee as real processes, for distributed end-to-end tests.

``running_cluster`` starts one process per service and one or more gateways
(``marquee.bench.stack.distributed``) on a private PostgreSQL database, a private Redis key
prefix and a private NATS stream, waits until each answers ``/healthz``, and afterwards stops
them and removes the database, the keys and the stream. Unreachable servers skip the test, or
fail it under ``MARQUEE_REQUIRE_SERVICES=1`` (see tests/servers.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from marquee.bench.stack import Stack, distributed
from tests import servers

Cluster = Stack


@contextmanager
def running_cluster(
    workdir: Path,
    *,
    gateways: int = 2,
    rate_limit_per_second: float = 10.0,
    rate_limit_burst: int = 10,
) -> Iterator[Cluster]:
    """Start the services and ``gateways`` gateway processes; yield once all are healthy."""
    postgres_url = servers.require_postgres()
    redis_url = servers.require_redis()
    nats_url = servers.require_nats()
    settings = {
        "MARQUEE_RATE_LIMIT_PER_SECOND": str(rate_limit_per_second),
        "MARQUEE_RATE_LIMIT_BURST": str(rate_limit_burst),
        "MARQUEE_LOG_LEVEL": "INFO",
    }
    with distributed(
        workdir,
        settings,
        booking=1,
        gateways=gateways,
        postgres_url=postgres_url,
        redis_url=redis_url,
        nats_url=nats_url,
    ) as cluster:
        yield cluster
