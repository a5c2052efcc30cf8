"""What one process shares across the services it runs: settings, cache, broker, transports."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from marquee.platform.auth import TokenService
from marquee.platform.broker import Broker, open_broker
from marquee.platform.cache import Cache, open_cache
from marquee.platform.settings import Settings
from marquee.platform.transport import HttpTransport, Transport
from marquee.platform.verified import VerifiedTokens

log = logging.getLogger("marquee.kernel")


class StartupError(Exception):
    """A dependency could not be reached or configured at start-up; the message says which."""


@dataclass
class Kernel:
    """Built once per process from settings; started by the first app, closed by the last.

    In all-in-one mode every service shares one kernel, so the in-memory broker and cache are
    one broker and one cache. In distributed mode each process has its own, talking to the
    shared Redis and NATS.
    """

    settings: Settings
    cache: Cache
    broker: Broker
    transports: dict[str, Transport] = field(default_factory=dict)
    # Services migrate their own database at start-up (all-in-one, tests); in distributed
    # mode ``marquee migrate`` does, and a service only checks that it has been done.
    migrate: bool = True
    _users: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Kernel:
        try:
            broker = open_broker(settings.broker_url, prefix=settings.broker_prefix)
        except ValueError as exc:
            raise StartupError(f"MARQUEE_BROKER_URL: {exc}") from None
        return cls(
            settings=settings,
            cache=open_cache(settings.cache_url, prefix=settings.cache_prefix),
            broker=broker,
            migrate=migrate,
        )

    @cached_property
    def tokens(self) -> TokenService:
        """Built once: the secret is read (or generated) a single time per process."""
        return TokenService(
            self.settings.resolved_jwt_secret(),
            access_ttl=self.settings.access_token_ttl_seconds,
            refresh_ttl=self.settings.refresh_token_ttl_seconds,
        )

    @cached_property
    def verified(self) -> VerifiedTokens:
        """Access tokens this process has verified, remembered until they expire."""
        return VerifiedTokens(self.tokens)

    def transport(self, service: str) -> Transport:
        """The way to reach ``service``: in-process if registered, else its configured URLs."""
        if service not in self.transports:
            urls = self.settings.upstream_urls(service)
            if not urls:
                raise StartupError(
                    f"MARQUEE_{service.upper()}_URLS is not set: distributed mode needs the"
                    f" {service} service's address, e.g. http://127.0.0.1:8001"
                )
            self.transports[service] = HttpTransport(
                urls,
                timeout=self.settings.upstream_timeout_seconds,
                connections=self.settings.upstream_concurrency,
                peer=service,
            )
        return self.transports[service]

    async def start(self) -> None:
        self._users += 1
        if self._users > 1:
            return
        try:
            await self.cache.ping()
        except Exception as exc:
            raise StartupError(
                f"cache unreachable at {self.settings.cache_url}: {exc}"
                " (start Redis or set MARQUEE_CACHE_URL=memory://)"
            ) from None
        try:
            await self.broker.start()
        except Exception as exc:
            raise StartupError(
                f"broker unreachable at {self.settings.broker_url}: {exc}"
                " (start NATS with JetStream or set MARQUEE_BROKER_URL=memory://)"
            ) from None

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        for transport in self.transports.values():
            await transport.close()
        await self.broker.close()
        await self.cache.close()
