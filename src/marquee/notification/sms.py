"""SMS senders: one port, a file outbox (the default) and a log sender, by ``MARQUEE_SMS_URL``.

A real SMS provider plugs in behind ``SmsSender``; the built-in adapters let a person see what
would have been sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from marquee.notification.domain import DeliveryError, mask_phone
from marquee.notification.mailers import directory_from, file_stem
from marquee.notification.rendering import SmsText

log = logging.getLogger("marquee.notification.sms")


class SmsSender(Protocol):
    """Hands one text message to the SMS system; returns once it is accepted.

    Raises ``DeliveryError`` (``permanent=True`` when the number can never receive it).
    Sending the same message twice (same ``message_id``) must be harmless where the adapter
    can make it so.
    """

    async def send(self, message: SmsText) -> None: ...

    def describe(self) -> str: ...


class FileSms:
    """One small text file per message in ``directory``, named after its message id and
    replaced (not duplicated) when the same message is sent again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: SmsText) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise DeliveryError(f"cannot write to the SMS outbox {self.directory}: {exc}") from exc

    def describe(self) -> str:
        return f"SMS file outbox {self.directory}"

    def path_for(self, message: SmsText) -> Path:
        return self.directory / f"{file_stem(message.message_id)}.txt"

    def _write(self, message: SmsText) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"To: {message.to}", f"Message-ID: {message.message_id}"]
        if message.request_id:
            lines.append(f"X-Request-ID: {message.request_id}")
        data = ("\n".join(lines) + "\n\n" + message.text + "\n").encode()
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self.path_for(message))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class LogSms:
    """Writes each message to the log (``marquee.notification.sms``), the number masked."""

    async def send(self, message: SmsText) -> None:
        log.info("SMS to=%s id=%s: %s", mask_phone(message.to), message.message_id, message.text)

    def describe(self) -> str:
        return "SMS log"


def open_sms(url: str, *, data_dir: Path) -> SmsSender:
    """``file://`` (``data_dir/sms``), ``file:///some/dir`` or ``log://``; ValueError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FileSms(directory_from(parts.netloc, parts.path, data_dir / "sms"))
    if scheme == "log":
        return LogSms()
    raise ValueError(f"unknown SMS sender {scheme or url!r}: use file:// or log://")
