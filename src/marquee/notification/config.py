"""The notification service's configuration, read once from Settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from marquee.platform.settings import Settings


def _setting(settings: Settings, name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    if isinstance(value, SecretStr):
        # A URL with a password may be kept secret in Settings (hidden from its repr).
        value = value.get_secret_value()
    return default if value is None else value


# Not slotted: from_settings reads the class-level defaults.
@dataclass(frozen=True)
class NotificationConfig:
    """How messages are sent and retried.

    ``mailer_url``: ``file://`` (one ``.eml`` per message under ``data_dir/outbox``; the
    default), ``file:///some/dir``, ``smtp://user:pass@host:587?starttls=1`` or
    ``smtps://user:pass@host:465`` (see ``mailers.open_mailer``). ``sms_url``: ``file://``
    (``data_dir/sms``), ``file:///some/dir`` or ``log://``. A delivery is tried at most
    ``max_attempts`` times, ``retry_base_seconds`` doubling up to ``retry_cap_seconds``
    between attempts (jittered). A worker holds a claimed delivery for ``lease_seconds``:
    if it dies meanwhile, another worker sends it after that.
    """

    data_dir: Path
    mailer_url: str = "file://"
    mail_from: str = "Marquee <tickets@marquee.local>"
    sms_url: str = "file://"
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    poll_interval_seconds: float = 1.0
    lease_seconds: float = 120.0
    batch_size: int = 20
    concurrency: int = 8
    public_url: str = "http://127.0.0.1:8000"
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.retry_base_seconds <= 0 or self.retry_cap_seconds <= 0:
            raise ValueError("retry delays must be positive")
        if self.poll_interval_seconds <= 0 or self.lease_seconds <= 0:
            raise ValueError("poll interval and lease must be positive")
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch size and concurrency must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> NotificationConfig:
        """Settings fields: ``mailer_url``, ``mail_from``, ``sms_url``, ``public_url``,
        ``notification_max_attempts``, ``notification_retry_base_seconds``,
        ``notification_retry_cap_seconds``, ``notification_poll_interval_seconds``,
        ``notification_timezone``; each falls back to the default above when absent."""
        return cls(
            data_dir=settings.data_dir,
            mailer_url=_setting(settings, "mailer_url", cls.mailer_url),
            mail_from=_setting(settings, "mail_from", cls.mail_from),
            sms_url=_setting(settings, "sms_url", cls.sms_url),
            max_attempts=_setting(settings, "notification_max_attempts", cls.max_attempts),
            retry_base_seconds=_setting(
                settings, "notification_retry_base_seconds", cls.retry_base_seconds
            ),
            retry_cap_seconds=_setting(
                settings, "notification_retry_cap_seconds", cls.retry_cap_seconds
            ),
            poll_interval_seconds=_setting(
                settings, "notification_poll_interval_seconds", cls.poll_interval_seconds
            ),
            public_url=settings.public_base_url,
            timezone=_setting(settings, "notification_timezone", cls.timezone),
        )
