"""E-tickets: QR payloads signed with Ed25519, verifiable offline, and signed links to the PNG.

A ticket's QR code carries ``MQT1.<claims>.<signature>`` (both base64url, no padding): the
claims are compact JSON naming the ticket, order, session, area and seat; the signature is
Ed25519 over ``MQT1.<claims>``. A gate scanner holding only the public key (served at
``GET /api/v1/tickets/signing-key``) can tell a genuine ticket from a forged one without
calling Marquee; whether it was already used or refunded needs the check-in endpoint.

The signing key comes from the setting ``MARQUEE_TICKET_SIGNING_KEY`` (a PEM private key, or
the base64 of the 32 raw private bytes), which every booking instance of a deployment must
share. Without it a key is generated once and kept at ``<data_dir>/keys/tickets_ed25519.pem``,
which suits the single-machine modes.

The PNG link is ``<public URL>/api/v1/tickets/{ticket_id}/qr.png?sig=...`` where ``sig`` is
an HMAC of the ticket id under a key derived from the JWT secret, so the link can be mailed
and opened without signing in.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from marquee.platform.settings import Settings

PAYLOAD_PREFIX = "MQT1"
KEY_FILE = Path("keys") / "tickets_ed25519.pem"
MAX_PAYLOAD_CHARS = 2048


class ForgedTicket(Exception):
    """The payload is malformed or its signature does not verify."""


class SigningKeyError(ValueError):
    """The configured ticket signing key cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class TicketClaims:
    """What a ticket's QR code asserts."""

    ticket_id: str
    order_id: str
    session_id: str
    area_id: str
    seat_number: int
    issued_at: int  # Unix seconds

    def to_compact(self) -> dict[str, str | int]:
        return {
            "t": self.ticket_id,
            "o": self.order_id,
            "s": self.session_id,
            "a": self.area_id,
            "n": self.seat_number,
            "i": self.issued_at,
        }

    @classmethod
    def from_compact(cls, data: object) -> TicketClaims:
        if not isinstance(data, dict):
            raise ForgedTicket("claims are not an object")
        try:
            claims = cls(
                ticket_id=data["t"],
                order_id=data["o"],
                session_id=data["s"],
                area_id=data["a"],
                seat_number=data["n"],
                issued_at=data["i"],
            )
        except KeyError as exc:
            raise ForgedTicket(f"claim {exc} missing") from None
        texts = (claims.ticket_id, claims.order_id, claims.session_id, claims.area_id)
        numbers = (claims.seat_number, claims.issued_at)
        if not all(isinstance(v, str) for v in texts) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in numbers
        ):
            raise ForgedTicket("claims have the wrong types")
        return claims


class TicketVerifier:
    """Checks payloads with the public key alone: what a scanner at the gate does offline."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._public_key = public_key

    @classmethod
    def from_pem(cls, pem: bytes) -> TicketVerifier:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return cls(key)

    def verify(self, payload: str) -> TicketClaims:
        """The claims of a genuine payload; ``ForgedTicket`` for anything else."""
        if len(payload) > MAX_PAYLOAD_CHARS:
            raise ForgedTicket("payload too long")
        parts = payload.strip().split(".")
        if len(parts) != 3 or parts[0] != PAYLOAD_PREFIX:
            raise ForgedTicket("not a Marquee ticket payload")
        try:
            claims_raw = _b64decode(parts[1])
            signature = _b64decode(parts[2])
        except (binascii.Error, ValueError):
            raise ForgedTicket("payload is not base64url") from None
        try:
            self._public_key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
        except InvalidSignature:
            raise ForgedTicket("signature does not verify") from None
        try:
            data = orjson.loads(claims_raw)
        except orjson.JSONDecodeError:
            raise ForgedTicket("claims are not JSON") from None
        return TicketClaims.from_compact(data)


class TicketSigner(TicketVerifier):
    """Signs ticket payloads and QR-image links; holds the private key."""

    def __init__(
        self, private_key: Ed25519PrivateKey, link_secret: bytes, public_url: str = ""
    ) -> None:
        super().__init__(private_key.public_key())
        self._private_key = private_key
        self._public_url = public_url.rstrip("/")
        self._link_key = hashlib.sha256(b"marquee-ticket-qr-link:" + link_secret).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> TicketSigner:
        """The deployment's signer: the configured key, or the one kept under ``data_dir``."""
        configured = settings.ticket_signing_key
        if configured:
            key = parse_private_key(configured)
        else:
            key = load_or_create_key_file(settings.data_dir / KEY_FILE)
        return cls(key, settings.resolved_jwt_secret().encode(), settings.public_base_url)

    def sign(self, claims: TicketClaims) -> str:
        body = _b64encode(orjson.dumps(claims.to_compact()))
        signed = f"{PAYLOAD_PREFIX}.{body}"
        signature = self._private_key.sign(signed.encode("ascii"))
        return f"{signed}.{_b64encode(signature)}"

    def link_signature(self, ticket_id: str) -> str:
        """The ``sig`` that opens one ticket's QR image without signing in."""
        mac = hmac.new(self._link_key, ticket_id.encode(), hashlib.sha256).digest()
        return _b64encode(mac[:18])

    def link_is_valid(self, ticket_id: str, signature: str) -> bool:
        # compare_digest takes only ASCII text; a signature is base64url, so anything else is
        # simply not one (and must not become a 500).
        if not signature.isascii():
            return False
        return hmac.compare_digest(self.link_signature(ticket_id), signature)

    def qr_url(self, ticket_id: str) -> str:
        """The PNG's signed link, absolute under the public URL the signer was given."""
        path = f"/api/v1/tickets/{ticket_id}/qr.png?sig={self.link_signature(ticket_id)}"
        return self._public_url + path

    def public_key_pem(self) -> str:
        return (
            self._public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
            .strip()
        )

    def public_key_raw(self) -> str:
        raw = self._public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode("ascii")


def qr_png(payload: str, *, scale: int = 6) -> bytes:
    """The payload as a QR code PNG (error correction M, the standard 4-module border)."""
    buffer = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def parse_private_key(value: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS#8) or the base64 of its 32 raw bytes."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"MARQUEE_TICKET_SIGNING_KEY is not a usable PEM: {exc}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("MARQUEE_TICKET_SIGNING_KEY is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SigningKeyError("MARQUEE_TICKET_SIGNING_KEY is neither PEM nor base64") from None
    if len(raw) != 32:
        raise SigningKeyError(
            f"MARQUEE_TICKET_SIGNING_KEY must be 32 raw bytes in base64, got {len(raw)}"
        )
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_or_create_key_file(path: Path) -> Ed25519PrivateKey:
    """Read the key at ``path``, generating it first if absent.

    Processes starting together may race to create it: each writes a complete file under a
    temporary name and links it into place, which fails for all but the first, and the losers
    read the winner's key. A reader therefore never sees a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tickets-key-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(private_key_pem(Ed25519PrivateKey.generate()))
            os.chmod(temporary, 0o600)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 private key")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
