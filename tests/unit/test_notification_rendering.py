"""Rendered messages: Chinese that survives encoding, both parts, e-ticket QR codes, headers."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import segno

from marquee.booking.events import (
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
    TicketIssued,
)
from marquee.notification.domain import Kind
from marquee.notification.rendering import Envelope, Renderer, money, qr_png, recipient_address

SESSION = datetime(2026, 8, 15, 11, 30, tzinfo=UTC)  # 19:30 in Shanghai
NOW = datetime(2026, 1, 14, 15, 30, tzinfo=UTC)


def summary(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "order_id": "order-9999",
        "user_id": "uuid-1234",
        "show_id": "show-5678",
        "show_title": "周杰伦 2026 世界巡回演唱会",
        "venue": "上海体育场",
        "session_id": "session-001",
        "session_starts_at": SESSION,
        "area_id": "vip-a",
        "area_name": "VIP A区",
        "quantity": 2,
        "unit_price": Decimal("1280"),
        "total_amount": Decimal("2560"),
        "currency": "CNY",
    }
    fields.update(overrides)
    return fields


def paid(tickets: int = 2) -> OrderPaid:
    return OrderPaid(
        **summary(quantity=tickets),
        paid_at=NOW,
        payment_method="alipay",
        tickets=[
            TicketIssued(
                ticket_id=f"ticket-{n:03d}",
                qr_payload=f"MQ1.ticket-{n:03d}.signature-{n}",
                qr_url=f"/api/v1/tickets/ticket-{n:03d}/qr.png?sig=abc{n}",
            )
            for n in range(1, tickets + 1)
        ],
    )


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(
        mail_from="Marquee <tickets@marquee.test>",
        public_url="https://tickets.example.com/",
        timezone="Asia/Shanghai",
    )


ALICE = Envelope(
    event_id="evt-1", request_id="abc-123", recipient_name="王小明", recipient="alice@example.com"
)


def sent_and_received(message: EmailMessage) -> EmailMessage:
    """The message as a mail client reads it after the wire."""
    raw = message.as_bytes()
    assert raw.isascii(), "every header and body is 7-bit on the wire"
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    content: str = part.get_content()
    return content


def png_pixels(data: bytes) -> list[list[int]]:
    """Decode a non-interlaced 1-bit greyscale PNG (what segno writes) into rows of 0/1."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            idat += body
        chunks[kind] = body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (1, 0, 0)
    raw = zlib.decompress(idat)
    stride = (width + 7) // 8
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - 1] if i else 0
            up = previous[i]
            upleft = previous[i - 1] if i else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else upleft
                line[i] = (line[i] + pred) & 0xFF
        previous = line
        rows.append([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
    return rows


def qr_modules(png: bytes, *, scale: int = 6, border: int = 4) -> list[list[int]]:
    """The QR matrix read back from the picture: 1 for a dark module."""
    pixels = png_pixels(png)
    size = len(pixels) // scale - 2 * border
    return [
        [
            1 - pixels[(border + r) * scale + scale // 2][(border + c) * scale + scale // 2]
            for c in range(size)
        ]
        for r in range(size)
    ]


def test_the_qr_picture_encodes_exactly_the_tickets_signed_payload() -> None:
    payload = "MQ1.ticket-001.c2lnbmF0dXJl"
    expected = [[int(bool(cell)) for cell in row] for row in segno.make(payload, error="m").matrix]
    assert qr_modules(qr_png(payload)) == expected


def test_an_order_confirmation_has_a_chinese_subject_text_and_html_and_the_payment_deadline(
    renderer: Renderer,
) -> None:
    order = OrderCreated(**summary(), expires_at=datetime(2026, 1, 14, 7, 45, tzinfo=UTC))
    message = sent_and_received(renderer.email(Kind.ORDER_CONFIRMATION, order, ALICE, now=NOW))
    assert "订单已创建" in message["Subject"]
    assert "周杰伦 2026 世界巡回演唱会" in message["Subject"]
    text, html = text_of(message, "plain"), text_of(message, "html")
    for body in (text, html):
        assert "王小明" in body
        assert "2026-01-14 15:45 (UTC+08:00)" in body  # the deadline, in local time
        assert "上海体育场" in body
        assert "2026-08-15 19:30 (UTC+08:00)" in body
        assert "VIP A区" in body
        assert "¥2,560.00" in body
    assert "<html" in html
    assert not message.is_multipart() or not any(
        part.get_content_type() == "image/png" for part in message.walk()
    )


def test_the_recipients_name_and_the_tracing_ids_are_in_the_headers(renderer: Renderer) -> None:
    order = OrderCreated(**summary(), expires_at=NOW)
    rendered = renderer.email(Kind.ORDER_CONFIRMATION, order, ALICE, now=NOW)
    wire = rendered.as_bytes().decode("ascii")
    assert "To: =?utf-8?b?" in wire  # the Chinese name travels as an encoded word
    message = sent_and_received(rendered)
    assert message["To"].addresses[0].display_name == "王小明"
    assert message["To"].addresses[0].addr_spec == "alice@example.com"
    assert message["X-Request-ID"] == "abc-123"
    assert message["X-Marquee-Event-ID"] == "evt-1"
    assert message["Message-ID"] == "<evt-1.email@marquee.test>"
    assert message["From"].addresses[0].addr_spec == "tickets@marquee.test"


def test_an_english_name_reads_plainly_in_the_to_header(renderer: Renderer) -> None:
    order = OrderCreated(**summary(), expires_at=NOW)
    envelope = Envelope("evt-2", None, "Alice Wang", "alice@example.com")
    message = renderer.email(Kind.ORDER_CONFIRMATION, order, envelope, now=NOW)
    assert message["To"] == "Alice Wang <alice@example.com>"
    assert "X-Request-ID" not in message


def test_e_tickets_carry_one_qr_png_per_ticket_shown_inline_in_the_html(
    renderer: Renderer,
) -> None:
    order = paid(tickets=3)
    message = sent_and_received(renderer.email(Kind.E_TICKETS, order, ALICE, now=NOW))
    pngs = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert len(pngs) == 3
    html = text_of(message, "html")
    for ticket, part in zip(order.tickets, pngs, strict=True):
        data = part.get_content()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert qr_modules(data) == [
            [int(bool(cell)) for cell in row]
            for row in segno.make(ticket.qr_payload, error="m").matrix
        ]
        cid = part["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
        assert part.get_filename() == f"{ticket.ticket_id}.png"
    text = text_of(message, "plain")
    assert "https://tickets.example.com/api/v1/tickets/ticket-001/qr.png?sig=abc1" in text
    for body in (text, html):
        assert "上海体育场" in body
        assert "VIP A区" in body
        assert "2026-08-15 19:30" in body


def test_a_cancellation_says_whether_time_ran_out_or_the_user_cancelled(
    renderer: Renderer,
) -> None:
    timeout = OrderCancelled(**summary(), cancelled_at=NOW, reason="timeout")
    by_user = OrderCancelled(**summary(), cancelled_at=NOW, reason="user")
    timed_out = sent_and_received(renderer.email(Kind.ORDER_CANCELLED, timeout, ALICE, now=NOW))
    cancelled = sent_and_received(renderer.email(Kind.ORDER_CANCELLED, by_user, ALICE, now=NOW))
    assert "超时未支付" in timed_out["Subject"]
    assert "超时未支付" not in cancelled["Subject"]
    assert "超过支付时限" in text_of(timed_out, "plain")
    assert "您已于" in text_of(cancelled, "plain")
    assert "自动取消" in text_of(timed_out, "html")


def test_a_refund_confirmation_states_the_amount_returned(renderer: Renderer) -> None:
    order = OrderRefunded(**summary(), refunded_at=NOW, refund_amount=Decimal("2304.50"))
    message = sent_and_received(renderer.email(Kind.ORDER_REFUNDED, order, ALICE, now=NOW))
    assert "¥2,304.50" in message["Subject"]
    assert "¥2,304.50" in text_of(message, "plain")


def test_html_escapes_what_came_from_outside(renderer: Renderer) -> None:
    order = OrderCreated(**summary(show_title="<script>alert(1)</script>"), expires_at=NOW)
    envelope = Envelope("evt-3", None, "Bob <b>", "bob@example.com")
    html = text_of(
        sent_and_received(renderer.email(Kind.ORDER_CONFIRMATION, order, envelope, now=NOW)),
        "html",
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "address", ["not-an-address", "alice@example.com\r\nBcc: eve@example.com", "a@b.com, c@d.com"]
)
def test_an_address_that_is_not_one_mailbox_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="mailbox"):
        recipient_address("Alice", address)


def test_an_sms_is_one_short_line_with_the_order_and_what_happened(renderer: Renderer) -> None:
    envelope = Envelope("evt-4", "abc-123", "", "+8613812345678")
    sms = renderer.sms(Kind.E_TICKETS, paid(), envelope)
    assert sms.to == "+8613812345678"
    assert "\n" not in sms.text
    assert "order-9999" in sms.text
    assert "支付成功" in sms.text
    assert sms.message_id == "<evt-4.sms@marquee.test>"


def test_money_is_formatted_exactly() -> None:
    assert money(Decimal("1280.5"), "CNY") == "¥1,280.50"
    assert money(Decimal("0.1") + Decimal("0.2"), "USD") == "$0.30"
    assert money(Decimal("99"), "JPY") == "99.00 JPY"


def test_the_same_event_always_gets_the_same_message_id(renderer: Renderer) -> None:
    order = OrderCreated(**summary(), expires_at=NOW)
    first = renderer.email(Kind.ORDER_CONFIRMATION, order, ALICE, now=NOW)
    again = renderer.email(Kind.ORDER_CONFIRMATION, order, ALICE, now=NOW + timedelta(hours=1))
    assert first["Message-ID"] == again["Message-ID"]


# -- the buyer's language and the venue's clock ---------------------------------------------


def test_the_payment_method_is_named_in_the_buyers_language(renderer: Renderer) -> None:
    chinese = sent_and_received(renderer.email(Kind.E_TICKETS, paid(), ALICE, now=NOW))
    assert "支付方式：支付宝" in text_of(chinese, "plain")
    assert "支付方式：支付宝" in text_of(chinese, "html")

    bob = Envelope("evt-2", None, "Bob Smith", "bob@example.com", language="en")
    english = sent_and_received(renderer.email(Kind.E_TICKETS, paid(), bob, now=NOW))
    assert "Payment method: Alipay" in text_of(english, "plain")
    assert english["Subject"].startswith("[Marquee] Your e-tickets: ")
    assert "Dear Bob Smith," in text_of(english, "plain")
    assert "Dear Bob Smith," in text_of(english, "html")


@pytest.mark.parametrize("kind", list(Kind))
def test_every_message_exists_in_english_with_no_chinese_but_the_shows_own_names(
    renderer: Renderer, kind: Kind
) -> None:
    event = {
        Kind.ORDER_CONFIRMATION: OrderCreated(**summary(), expires_at=NOW),
        Kind.E_TICKETS: paid(),
        Kind.ORDER_CANCELLED: OrderCancelled(**summary(), cancelled_at=NOW, reason="timeout"),
        Kind.ORDER_REFUNDED: OrderRefunded(
            **summary(), refunded_at=NOW, refund_amount=Decimal("2560")
        ),
    }[kind]
    bob = Envelope("evt-2", None, "Bob", "bob@example.com", language="en")
    message = sent_and_received(renderer.email(kind, event, bob, now=NOW))
    sms = renderer.sms(kind, event, Envelope("evt-2", None, "", "+447700900000", language="en"))
    names = ("周杰伦 2026 世界巡回演唱会", "上海体育场", "VIP A区")
    for text in (text_of(message, "plain"), text_of(message, "html"), sms.text):
        for name in names:
            text = text.replace(name, "")
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in text), text


def test_times_are_on_the_venues_clock_with_its_offset(renderer: Renderer) -> None:
    in_london = Envelope("evt-3", None, "Bob", "bob@example.com", "en", "Europe/London")
    text = text_of(renderer.email(Kind.E_TICKETS, paid(), in_london, now=NOW), "plain")
    assert "Session: 2026-08-15 12:30 (UTC+01:00)" in text
    shanghai = text_of(renderer.email(Kind.E_TICKETS, paid(), ALICE, now=NOW), "plain")
    assert "场次：2026-08-15 19:30 (UTC+08:00)" in shanghai
