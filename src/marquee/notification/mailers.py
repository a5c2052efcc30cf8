"""Mailers: one port, an SMTP adapter and a file outbox, chosen by ``MARQUEE_MAILER_URL``."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from marquee.notification.domain import DeliveryError


class Mailer(Protocol):
    """Hands one complete message to the mail system.

    Returns once the message is accepted (by the SMTP server, or written to disk). Raises
    ``DeliveryError``: ``permanent=True`` when this message can never be delivered (the server
    refuses its recipient), otherwise a transient error worth retrying (server down, timeout).
    Sending the same message twice (same ``Message-ID``) must be harmless where the adapter can
    make it so: the file outbox overwrites its earlier copy.
    """

    async def send(self, message: EmailMessage) -> None: ...

    def describe(self) -> str:
        """Where messages go, for logs, without credentials."""
        ...


class FileMailer:
    """The outbox a person can read: one standard ``.eml`` file per message in ``directory``.

    The file is named after the message's ``Message-ID`` and written atomically (a temporary
    file renamed into place), so a message sent again replaces its copy instead of adding one,
    and a reader never sees half a message.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise DeliveryError(f"cannot write to the outbox {self.directory}: {exc}") from exc

    def describe(self) -> str:
        return f"file outbox {self.directory}"

    def path_for(self, message: EmailMessage) -> Path:
        return self.directory / f"{file_stem(message.get('Message-ID', ''))}.eml"

    def _write(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(message)
        # An internationalised address cannot be written as encoded words; such a message
        # is only valid as SMTPUTF8 (raw UTF-8 headers), which is how a server would get it.
        data = message.as_bytes(policy=policy.SMTPUTF8 if needs_smtputf8(message) else policy.SMTP)
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class SmtpMailer:
    """Sends through an SMTP server with aiosmtplib, one connection per message.

    ``use_tls`` is implicit TLS (``smtps://``, usually port 465). ``start_tls``: True requires
    STARTTLS, False never uses it, None upgrades when the server offers it.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None
    validate_certs: bool = True
    timeout: float = 30.0

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                validate_certs=self.validate_certs,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            permanent = all(500 <= error.code < 600 for error in exc.recipients)
            raise DeliveryError(f"SMTP refused the recipient: {exc}", permanent=permanent) from exc
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise DeliveryError(
                f"SMTP refused the recipient: {exc}", permanent=500 <= exc.code < 600
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Server down, unreachable, slow, or refusing for now (4xx), and also configuration
            # errors such as bad credentials: retried, so fixing the setting or the server
            # lets every waiting message through.
            detail = str(exc) or type(exc).__name__
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {detail}") from exc

    def describe(self) -> str:
        scheme = "smtps" if self.use_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(query: dict[str, list[str]], name: str) -> bool | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={values[-1]!r} is not a yes/no flag (use 1 or 0)")


def open_mailer(url: str, *, data_dir: Path) -> Mailer:
    """The mailer ``url`` names; raises ValueError (with what is wrong) for an unusable URL.

    - ``file://``: ``.eml`` files under ``data_dir/outbox``; ``file:///some/dir``: under that.
    - ``smtp://[user:pass@]host[:port][?starttls=1|0][&timeout=30][&verify=1|0]``: port 25 by
      default (587 when STARTTLS is required); user and password percent-encoded.
    - ``smtps://[user:pass@]host[:port]``: implicit TLS, port 465 by default.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FileMailer(directory_from(parts.netloc, parts.path, data_dir / "outbox"))
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"unknown mailer {scheme or url!r}: use file://, smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("an SMTP mailer URL needs a host, e.g. smtp://mail.example.com:587")
    query = parse_qs(parts.query)
    use_tls = scheme == "smtps"
    start_tls = _flag(query, "starttls")
    if use_tls and start_tls:
        raise ValueError("smtps:// is already TLS; starttls=1 needs smtp://")
    if use_tls:
        start_tls = False
    verify = _flag(query, "verify")
    try:
        port = parts.port or (465 if use_tls else 587 if start_tls else 25)
        timeout = float(query.get("timeout", ["30"])[-1])
    except ValueError as exc:
        raise ValueError(f"bad SMTP port or timeout: {exc}") from None
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    return SmtpMailer(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=start_tls,
        validate_certs=verify is not False,
        timeout=timeout,
    )


def directory_from(netloc: str, path: str, default: Path) -> Path:
    """``file://`` → ``default``; ``file:///abs/dir`` → that directory; a relative
    ``file://dir`` is relative to the working directory."""
    if netloc:
        return Path(netloc + path)
    return Path(path) if path not in ("", "/") else default


def needs_smtputf8(message: EmailMessage) -> bool:
    """True when an address (not merely a display name) in the message is not ASCII."""
    for name in ("From", "To", "Cc", "Reply-To"):
        header = message.get(name)
        for address in getattr(header, "addresses", ()):
            if not address.addr_spec.isascii():
                return True
    return False


def file_stem(message_id: str) -> str:
    """A file name from a Message-ID: ``<abc.email@marquee.local>`` → ``abc.email``."""
    local = message_id.strip().strip("<>").partition("@")[0]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", local).strip("._")
    if not stem:
        raise DeliveryError("the message has no usable Message-ID", permanent=True)
    return stem[:150]
