"""Settings read once from the environment (prefix ``MARQUEE_``), every value with a default."""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICES = ("identity", "catalog", "booking", "notification")
ServiceName = Literal["identity", "catalog", "booking", "notification", "gateway"]


class SettingsError(Exception):
    """A setting has a value Marquee cannot use; the message names it."""


class Settings(BaseSettings):
    """Marquee's configuration. Adapters are chosen by URL scheme, once, at start-up."""

    model_config = SettingsConfigDict(env_prefix="MARQUEE_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path("var")

    # None means one SQLite file per service under data_dir.
    database_url: str | None = None
    identity_database_url: str | None = None
    catalog_database_url: str | None = None
    booking_database_url: str | None = None
    notification_database_url: str | None = None
    # PostgreSQL connections per service process, a fixed pool: the sum over every process
    # must stay under the server's max_connections (see docs/capacity.md).
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    # How long a request waits for a pooled connection; below the gateway's upstream timeout,
    # so an exhausted pool is a service's 503, not the gateway's 504.
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    # "transaction": a pooler in transaction mode (PgBouncer) stands in front of PostgreSQL.
    db_pooler: Literal["none", "transaction"] = "none"

    cache_url: str = "memory://"
    cache_prefix: str = "marquee:"
    broker_url: str = "memory://"
    broker_prefix: str = "marquee"

    jwt_secret: str | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    admin_email: str | None = None
    admin_password: str | None = None

    rate_limit_per_second: float = Field(default=10.0, gt=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    upstream_concurrency: int = Field(default=256, ge=1)
    upstream_queue: int = Field(default=1024, ge=0)
    upstream_queue_timeout_seconds: float = Field(default=2.0, gt=0)
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long a client may take to send a request's headers, then its body (slowloris: 408).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)

    # Upstream URLs for the gateway and service clients in distributed mode, comma separated.
    identity_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    catalog_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    booking_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    notification_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)

    payment_window_seconds: int = Field(default=900, ge=1)
    # How long the gateway may repeat Booking's sold-out answer to identical order requests
    # without asking Booking (see gateway/refusals.py); 0: every attempt goes to Booking.
    sold_out_max_age_seconds: float = Field(default=1.0, ge=0, le=60)
    payment_provider: Literal["sandbox"] = "sandbox"
    # Ed25519 key signing e-tickets (PEM, or base64 of the 32 raw private bytes); every
    # booking instance must share it. Unset: generated once under data_dir/keys.
    ticket_signing_key: str | None = Field(default=None, repr=False)

    # Notification: where mail and text messages go, and how hard to try.
    # file:// (DATA_DIR/outbox/*.eml) | file:///dir | smtp://user:pass@host:587?starttls=1
    # | smtps://user:pass@host:465
    mailer_url: str = "file://"
    mail_from: str = "Marquee <tickets@marquee.local>"
    sms_url: str = "file://"  # file:// (DATA_DIR/sms/*.txt) | file:///dir | log://
    # Where the public reaches the gateway: the base of every absolute link Marquee hands out
    # (e-tickets' QR codes, links in emails). Unset: the gateway's own address, HOST:PORT.
    public_url: str | None = None
    notification_max_attempts: int = Field(default=8, ge=1, le=100)
    notification_retry_base_seconds: float = Field(default=30.0, gt=0)
    notification_retry_cap_seconds: float = Field(default=3600.0, gt=0)
    notification_poll_interval_seconds: float = Field(default=1.0, gt=0)
    notification_timezone: str = "Asia/Shanghai"
    # OpenTelemetry: an OTLP/HTTP collector's base URL (spans go to <url>/v1/traces); unset = off.
    otel_endpoint: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    demo_data: bool = False  # `marquee up` turns it on; a production service never loads it

    @field_validator(
        "trusted_proxies",
        "identity_urls",
        "catalog_urls",
        "booking_urls",
        "notification_urls",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("cache_url")
    @classmethod
    def _known_cache(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("must start with memory:// or redis://")
        return value

    @field_validator(
        "database_url",
        "identity_database_url",
        "catalog_database_url",
        "booking_database_url",
        "notification_database_url",
    )
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        ):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _timeouts_nest(self) -> Settings:
        if self.db_pool_timeout_seconds >= self.upstream_timeout_seconds:
            raise ValueError(
                f"MARQUEE_DB_POOL_TIMEOUT_SECONDS ({self.db_pool_timeout_seconds:g}) must be"
                f" below MARQUEE_UPSTREAM_TIMEOUT_SECONDS ({self.upstream_timeout_seconds:g})"
            )
        return self

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)

    @property
    def burst(self) -> int:
        return self.rate_limit_burst or max(1, round(self.rate_limit_per_second))

    @property
    def public_base_url(self) -> str:
        """``public_url`` without a trailing slash, else ``http://HOST:PORT`` (a wildcard
        listening address becomes the loopback one, which at least opens on this machine)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)  # noqa: S104
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def database_url_for(self, service: str) -> str:
        """One service's database URL: its own override, the shared URL, or its SQLite file."""
        own: str | None = getattr(self, f"{service}_database_url", None)
        if own:
            return own
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"
        if self.database_url.startswith("sqlite"):
            # One SQLite file cannot keep services' tables apart: each gets a sibling file.
            prefix, _, path = self.database_url.partition(":///")
            file = Path(path)
            sibling = file.with_name(f"{file.stem}-{service}{file.suffix or '.db'}")
            return f"{prefix}:///{sibling}"
        return self.database_url

    def upstream_urls(self, service: str) -> list[str]:
        urls: list[str] = getattr(self, f"{service}_urls")
        return urls

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or one generated once and kept under data_dir."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        path.write_text(secret)
        path.chmod(0o600)
        return secret


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises SettingsError naming the variable.

    With ``MARQUEE_SECRETS_DIR`` set, a file there named like a variable
    (``MARQUEE_JWT_SECRET``) supplies its value when the environment does not: how Compose
    secrets and Kubernetes Secret volumes hand over credentials without putting them in the
    environment.
    """
    secrets_dir = os.environ.get("MARQUEE_SECRETS_DIR")
    if secrets_dir:
        if not Path(secrets_dir).is_dir():
            raise SettingsError(f"MARQUEE_SECRETS_DIR: {secrets_dir!r} is not a directory")
        overrides = {"_secrets_dir": secrets_dir, **overrides}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule between settings: the message names them
            raise SettingsError(str(first["msg"]).removeprefix("Value error, ")) from None
        name = "MARQUEE_" + "_".join(str(part) for part in first["loc"][:1]).upper()
        raise SettingsError(f"{name}: {first['msg']} (got {first.get('input')!r})") from None
