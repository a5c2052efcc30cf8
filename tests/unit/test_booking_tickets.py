"""E-ticket payloads: Ed25519-signed, verifiable offline, forgeries refused; signed PNG links."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from marquee.booking.tickets import (
    ForgedTicket,
    SigningKeyError,
    TicketClaims,
    TicketSigner,
    TicketVerifier,
    load_or_create_key_file,
    parse_private_key,
    private_key_pem,
    qr_png,
)
from marquee.platform.settings import Settings

CLAIMS = TicketClaims("ticket-001", "order-9999", "session-001", "vip-a", 1, 1_768_404_600)


@pytest.fixture
def signer() -> TicketSigner:
    return TicketSigner(Ed25519PrivateKey.generate(), b"jwt-secret")


def test_a_signed_payload_verifies_with_the_public_key_alone(signer: TicketSigner) -> None:
    payload = signer.sign(CLAIMS)
    scanner = TicketVerifier.from_pem(signer.public_key_pem().encode())
    assert scanner.verify(payload) == CLAIMS
    assert payload.startswith("MQT1.")


def test_a_payload_signed_by_another_key_is_forged(signer: TicketSigner) -> None:
    other = TicketSigner(Ed25519PrivateKey.generate(), b"jwt-secret")
    with pytest.raises(ForgedTicket, match="signature"):
        signer.verify(other.sign(CLAIMS))


def test_changing_any_claim_breaks_the_signature(signer: TicketSigner) -> None:
    prefix, body, signature = signer.sign(CLAIMS).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["t"] = "ticket-002"
    tampered = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    with pytest.raises(ForgedTicket):
        signer.verify(f"{prefix}.{tampered}.{signature}")


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "hello",
        "MQT1.abc",
        "MQT2.abc.def",
        "MQT1.!!!.???",
        "MQT1..",
        "MQT1." + "A" * 5000 + ".x",
        "https://example.com/qr/ticket-001.png",
    ],
)
def test_malformed_payloads_are_forged(signer: TicketSigner, payload: str) -> None:
    with pytest.raises(ForgedTicket):
        signer.verify(payload)


def test_a_validly_signed_payload_with_wrong_claims_is_forged(signer: TicketSigner) -> None:
    # Signed with the real key but not a ticket's claims: only the key holder could do this,
    # and the verifier still refuses what it cannot read.
    body = base64.urlsafe_b64encode(orjson.dumps({"t": 1})).rstrip(b"=").decode()
    signed = f"MQT1.{body}"
    signature = signer._private_key.sign(signed.encode())
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(ForgedTicket):
        signer.verify(f"{signed}.{encoded}")


@given(st.text(max_size=300))
def test_no_arbitrary_text_verifies(text: str) -> None:
    verifier = TicketVerifier(Ed25519PrivateKey.from_private_bytes(b"k" * 32).public_key())
    with pytest.raises(ForgedTicket):
        verifier.verify(text)


def test_a_signed_link_opens_only_its_own_ticket(signer: TicketSigner) -> None:
    sig = signer.link_signature("ticket-001")
    assert signer.link_is_valid("ticket-001", sig)
    assert not signer.link_is_valid("ticket-002", sig)
    assert not signer.link_is_valid("ticket-001", sig[:-1] + ("A" if sig[-1] != "A" else "B"))
    assert signer.qr_url("ticket-001") == f"/api/v1/tickets/ticket-001/qr.png?sig={sig}"


@given(st.text(max_size=40))
def test_no_text_but_the_signature_opens_a_link(text: str) -> None:
    signer = TicketSigner(Ed25519PrivateKey.from_private_bytes(b"k" * 32), b"secret")
    assert signer.link_is_valid("ticket-001", text) == (text == signer.link_signature("ticket-001"))


def test_a_signed_link_is_absolute_under_the_public_url() -> None:
    signer = TicketSigner(Ed25519PrivateKey.generate(), b"s", "https://tickets.example.com/")
    sig = signer.link_signature("ticket-001")
    assert (
        signer.qr_url("ticket-001")
        == f"https://tickets.example.com/api/v1/tickets/ticket-001/qr.png?sig={sig}"
    )


def test_links_depend_on_the_deployments_secret() -> None:
    key = Ed25519PrivateKey.generate()
    one, two = TicketSigner(key, b"secret-one"), TicketSigner(key, b"secret-two")
    assert one.link_signature("t") != two.link_signature("t")


def test_the_qr_code_is_a_png(signer: TicketSigner) -> None:
    png = qr_png(signer.sign(CLAIMS))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_the_key_is_generated_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "tickets_ed25519.pem"
    first = load_or_create_key_file(path)
    again = load_or_create_key_file(path)
    assert private_key_pem(first) == private_key_pem(again)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["tickets_ed25519.pem"]


def test_a_configured_key_is_read_as_pem_or_raw_base64() -> None:
    key = Ed25519PrivateKey.generate()
    pem = private_key_pem(key).decode()
    raw = base64.b64encode(key.private_bytes_raw()).decode()
    assert private_key_pem(parse_private_key(pem)) == private_key_pem(key)
    assert private_key_pem(parse_private_key(raw)) == private_key_pem(key)


@pytest.mark.parametrize("value", ["not base64 at all!", base64.b64encode(b"short").decode()])
def test_an_unusable_configured_key_is_refused_with_a_clear_message(value: str) -> None:
    with pytest.raises(SigningKeyError, match="MARQUEE_TICKET_SIGNING_KEY"):
        parse_private_key(value)


def test_instances_sharing_a_data_dir_sign_with_one_key(settings: Settings) -> None:
    one, two = TicketSigner.from_settings(settings), TicketSigner.from_settings(settings)
    assert two.verify(one.sign(CLAIMS)) == CLAIMS
    assert one.link_signature("t") == two.link_signature("t")
