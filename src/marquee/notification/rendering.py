"""Messages rendered from the Jinja2 templates under ``templates/<language>/``: emails and SMS
texts, in the buyer's language (``zh``, or ``en`` for every other), times on the venue's clock.

Emails are ``email.message.EmailMessage`` objects under the ``SMTP`` policy (CRLF, RFC 2047
encoded words for non-ASCII headers such as a Chinese subject or display name), with a plain
text part and an HTML part; e-tickets carry one QR PNG per ticket, inline in the HTML and
named so mail clients also list it as an attachment.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import segno
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context

from marquee.booking.events import OrderPaid
from marquee.notification.domain import Channel, Kind, OrderEvent

TEMPLATES = Path(__file__).parent / "templates"
CURRENCY_SYMBOLS = {"CNY": "¥", "RMB": "¥", "USD": "$", "EUR": "€", "HKD": "HK$"}
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
PAYMENT_METHODS: dict[str, dict[str, str]] = {
    "zh": {"alipay": "支付宝", "wechat_pay": "微信支付", "card": "银行卡"},
    "en": {"alipay": "Alipay", "wechat_pay": "WeChat Pay", "card": "Card"},
}


def language_of(locale: str | None) -> str:
    """The template language for a buyer's locale: ``zh`` for any Chinese, else ``en``; no
    locale at all (an unknown buyer) is the default, ``zh``."""
    if not locale:
        return DEFAULT_LANGUAGE
    primary = locale.replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else "en"


def qr_png(payload: str, *, scale: int = 6) -> bytes:
    """The QR code of ``payload`` as PNG bytes (error correction M, a quiet zone of 4)."""
    buffer = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def money(amount: Decimal, currency: str) -> str:
    """``Decimal("2560")``, ``CNY`` → ``¥2,560.00``; exact, never through float."""
    text = f"{amount.quantize(Decimal('0.01')):,}"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def load_zone(name: str) -> tzinfo:
    """The named time zone, or UTC when this machine has no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


@dataclass(frozen=True, slots=True)
class SmsText:
    to: str
    text: str
    message_id: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a rendered message needs besides the order: who (and in which language), the
    venue's time zone, and the tracing identifiers."""

    event_id: str
    request_id: str | None
    recipient_name: str
    recipient: str
    language: str = DEFAULT_LANGUAGE
    timezone: str | None = None  # the venue's IANA zone; None: the renderer's default


class Renderer:
    """Renders every message from the templates; built once per app (templates are cached)."""

    def __init__(
        self,
        *,
        mail_from: str,
        public_url: str,
        timezone: str = "Asia/Shanghai",
        templates: Path = TEMPLATES,
    ) -> None:
        self.mail_from = mail_from
        self.domain = parseaddr(mail_from)[1].rpartition("@")[2] or "marquee.local"
        self.public_url = public_url.rstrip("/")
        self.zone = load_zone(timezone)
        self._envs = {language: self._environment(templates / language) for language in LANGUAGES}

    def _environment(self, folder: Path) -> Environment:
        env = Environment(
            loader=FileSystemLoader(folder),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            # Included snippets keep their last newline; trim_blocks eats the one after the tag.
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = self._when
        env.filters["when_short"] = self._when_short
        env.filters["money"] = money
        methods = PAYMENT_METHODS[folder.name]
        env.filters["payment_method"] = lambda method: methods.get(method, method)
        return env

    def subject(self, kind: Kind, order: OrderEvent, envelope: Envelope | None = None) -> str:
        text = self._render(f"{kind.value}.subject.txt", envelope, order=order)
        # A header is one line whatever the template's whitespace.
        return " ".join(text.split())

    def message_id(self, event_id: str, channel: Channel) -> str:
        """Stable per (event, channel), so a resend is recognisably the same message."""
        return f"<{event_id}.{channel.value}@{self.domain}>"

    def email(
        self, kind: Kind, order: OrderEvent, envelope: Envelope, *, now: datetime
    ) -> EmailMessage:
        """The complete email: headers, text and HTML parts, and the e-tickets' QR codes.

        Raises ValueError when the recipient's address cannot go in a header.
        """
        tickets = self._tickets(order)
        context: dict[str, Any] = {
            "order": order,
            "name": envelope.recipient_name,
            "event_id": envelope.event_id,
            "tickets": tickets,
        }
        subject = self.subject(kind, order, envelope)
        message = EmailMessage(policy=policy.SMTP)
        message["Subject"] = subject
        message["From"] = self.mail_from
        message["To"] = recipient_address(envelope.recipient_name, envelope.recipient)
        message["Date"] = format_datetime(now.astimezone(UTC))
        message["Message-ID"] = self.message_id(envelope.event_id, Channel.EMAIL)
        if envelope.request_id:
            message["X-Request-ID"] = envelope.request_id
        message["X-Marquee-Event-ID"] = envelope.event_id
        message["X-Marquee-Order-ID"] = order.order_id
        message["Auto-Submitted"] = "auto-generated"
        # base64 keeps Chinese bodies intact through any relay, 8BITMIME or not.
        message.set_content(self._render(f"{kind.value}.txt", envelope, **context), cte="base64")
        message.add_alternative(
            self._render(f"{kind.value}.html", envelope, subject=subject, **context),
            subtype="html",
            cte="base64",
        )
        if tickets:
            html = message.get_body(("html",))
            assert html is not None  # added just above
            for ticket in tickets:
                html.add_related(
                    ticket["png"],
                    maintype="image",
                    subtype="png",
                    cid=f"<{ticket['cid']}>",
                    filename=ticket["filename"],
                    disposition="inline",
                )
        return message

    def sms(self, kind: Kind, order: OrderEvent, envelope: Envelope) -> SmsText:
        text = " ".join(self._render(f"{kind.value}.sms.txt", envelope, order=order).split())
        return SmsText(
            to=envelope.recipient,
            text=text,
            message_id=self.message_id(envelope.event_id, Channel.SMS),
            request_id=envelope.request_id,
        )

    def _tickets(self, order: OrderEvent) -> list[dict[str, Any]]:
        if not isinstance(order, OrderPaid):
            return []
        return [
            {
                "ticket_id": ticket.ticket_id,
                "cid": f"qr-{_token(ticket.ticket_id)}@{self.domain}",
                "filename": _ticket_filename(ticket.ticket_id),
                "url": self._absolute(ticket.qr_url),
                "png": qr_png(ticket.qr_payload),
            }
            for ticket in order.tickets
        ]

    def _absolute(self, url: str) -> str:
        return f"{self.public_url}{url}" if url.startswith("/") else url

    def _render(self, template: str, envelope: Envelope | None, /, **context: Any) -> str:
        language = envelope.language if envelope is not None else DEFAULT_LANGUAGE
        env = self._envs.get(language, self._envs[DEFAULT_LANGUAGE])
        zone = self.zone
        if envelope is not None and envelope.timezone:
            zone = load_zone(envelope.timezone)
        return env.get_template(template).render(zone=zone, **context).strip() + "\n"

    @pass_context
    def _when(self, context: Context, moment: datetime) -> str:
        """A moment on the venue's clock, the zone named: ``2026-08-15 19:30 (UTC+08:00)``."""
        local = _aware(moment).astimezone(context["zone"])
        offset = local.strftime("%z")
        label = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        return f"{local:%Y-%m-%d %H:%M} ({label})"

    @pass_context
    def _when_short(self, context: Context, moment: datetime) -> str:
        return f"{_aware(moment).astimezone(context['zone']):%m-%d %H:%M}"


def recipient_address(name: str, address: str) -> Address:
    """``Alice Wang <alice@example.com>``; the name is encoded in the header when not ASCII.

    Raises ValueError for an address that cannot be a single mailbox.
    """
    if "@" not in address or any(ch in address for ch in "<>,;\r\n \t"):
        raise ValueError(f"not a mailbox: {address!r}")
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        raise ValueError(f"not a mailbox: {address!r}")
    clean_name = " ".join(name.split())
    return Address(display_name=clean_name, username=local, domain=domain)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ticket_filename(ticket_id: str) -> str:
    token = _token(ticket_id)
    return f"{token}.png" if token.lower().startswith("ticket") else f"ticket-{token}.png"


def _token(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:80]
