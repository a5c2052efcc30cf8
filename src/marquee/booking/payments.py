"""Payment providers behind one port, and the sandbox provider Marquee ships.

Booking charges through a ``PaymentProvider`` chosen once at start-up. The sandbox is the only
one shipped; a real provider (Alipay, WeChat Pay, a card acquirer) implements the same
protocol and is added to ``open_provider``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, Protocol, TypedDict

import orjson

from marquee.platform.cache import Cache

PaymentMethod = Literal["alipay", "wechat_pay", "card"]
PAYMENT_METHODS: tuple[PaymentMethod, ...] = ("alipay", "wechat_pay", "card")


class PaymentError(Exception):
    """Base of the errors a provider raises."""


class PaymentTimeout(PaymentError):
    """The provider did not answer in time: the charge may or may not have been made.

    Retrying with the same idempotency key is safe: it returns the charge if it was made and
    makes it (once) if it was not.
    """


class PaymentUnavailable(PaymentError):
    """The provider could not be reached: nothing was charged."""


class PaymentRejected(PaymentError):
    """The provider refused the request itself (e.g. a refund larger than the charge)."""


@dataclass(frozen=True, slots=True)
class Charge:
    """One charge attempt's outcome. ``reference`` is the provider's id for an approved charge;
    a declined attempt has ``reason`` instead and moved no money."""

    reference: str | None
    status: Literal["approved", "declined"]
    amount: Decimal
    currency: str
    method: str
    reason: str | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True, slots=True)
class Refund:
    reference: str
    charge_reference: str
    amount: Decimal
    status: Literal["refunded"] = "refunded"


class PaymentProvider(Protocol):
    """The port every payment provider implements.

    - ``charge`` takes money once per idempotency key: a repeated call after an approved
      charge returns that same charge (whatever the token) and never charges again. A declined
      attempt moves no money and does not use the key up, so the buyer can try another card.
      Raises ``PaymentTimeout`` when the outcome is unknown, ``PaymentUnavailable`` when the
      provider was not reached.
    - ``refund`` gives back ``amount`` of an approved charge. Refunding a charge in full is
      idempotent: a second full refund returns the first.
    - ``lookup`` reports the approved charge made under an idempotency key, if any (used to
      settle payments whose outcome was never learnt, e.g. after a timeout or a crash).
    """

    name: str

    async def charge(
        self,
        idempotency_key: str,
        amount: Decimal,
        currency: str,
        method: PaymentMethod,
        token: str,
    ) -> Charge: ...

    async def refund(self, reference: str, amount: Decimal) -> Refund: ...

    async def lookup(self, idempotency_key: str) -> Charge | None: ...


class _RefundRecord(TypedDict):
    reference: str
    amount: str


class _ChargeRecord(TypedDict):
    reference: str
    amount: str
    currency: str
    method: str
    refunded: str
    refunds: list[_RefundRecord]
    created_at: str


class SandboxProvider:
    """A provider that behaves like a real one without moving money; the token decides.

    - a token starting with ``decline`` (e.g. ``decline_insufficient_funds``) is declined; the
      rest of the token is the reason given;
    - a token starting with ``timeout`` is charged, but the answer is lost: the call raises
      ``PaymentTimeout``. Retrying with the same idempotency key returns that charge, so the
      buyer is charged exactly once;
    - a token starting with ``unavailable`` fails as if the provider were unreachable
      (``PaymentUnavailable``), charging nothing;
    - any other token (such as the seed's ``alipay_token_xxx``) is approved.

    Its records live in the shared cache (Redis in distributed mode), so every booking
    instance sees the same charges, as they would with a real provider. They are kept for
    ``retention`` seconds.
    """

    name = "sandbox"

    def __init__(self, cache: Cache, *, retention: float = 30 * 86400) -> None:
        self._cache = cache
        self._retention = retention

    async def charge(
        self,
        idempotency_key: str,
        amount: Decimal,
        currency: str,
        method: PaymentMethod,
        token: str,
    ) -> Charge:
        if amount <= 0:
            raise PaymentRejected(f"amount must be positive, not {amount}")
        existing = await self._load_charge(idempotency_key)
        if existing is not None:
            return self._same_charge(existing, amount, currency)
        if token.startswith("unavailable"):
            raise PaymentUnavailable("sandbox: provider unreachable (token says so)")
        if token.startswith("decline"):
            reason = token.removeprefix("decline").strip("_-: ") or "card_declined"
            return Charge(None, "declined", amount, currency, method, reason=reason)
        record: _ChargeRecord = {
            "reference": f"sbx_ch_{secrets.token_hex(12)}",
            "amount": str(amount),
            "currency": currency,
            "method": method,
            "refunded": "0",
            "refunds": [],
            "created_at": datetime.now(UTC).isoformat(),
        }
        # Claim the key atomically: of two concurrent charges with one key, one is made.
        stored = await self._cache.set(
            self._charge_key(idempotency_key),
            orjson.dumps(record),
            ttl=self._retention,
            only_if_absent=True,
        )
        if not stored:
            winner = await self._load_charge(idempotency_key)
            if winner is None:
                raise PaymentTimeout("sandbox: concurrent charge vanished; retry")
            return self._same_charge(winner, amount, currency)
        await self._cache.set(
            self._reference_key(record["reference"]),
            idempotency_key.encode(),
            ttl=self._retention,
        )
        if token.startswith("timeout"):
            raise PaymentTimeout("sandbox: the charge was made but the answer was lost")
        return _charge_of(record)

    async def refund(self, reference: str, amount: Decimal) -> Refund:
        key = await self._cache.get(self._reference_key(reference))
        record = None if key is None else await self._load_charge(key.decode())
        if key is None or record is None:
            raise PaymentRejected(f"sandbox: no charge {reference}")
        charged = Decimal(record["amount"])
        refunded = Decimal(record["refunded"])
        refunds = list(record["refunds"])
        if amount == charged and refunded == charged and refunds:
            first = refunds[0]
            return Refund(first["reference"], reference, Decimal(first["amount"]))
        if amount <= 0 or refunded + amount > charged:
            raise PaymentRejected(
                f"sandbox: cannot refund {amount} of {charged} ({refunded} already refunded)"
            )
        refund = Refund(f"sbx_re_{secrets.token_hex(12)}", reference, amount)
        refunds.append({"reference": refund.reference, "amount": str(amount)})
        record["refunded"] = str(refunded + amount)
        record["refunds"] = refunds
        await self._cache.set(
            self._charge_key(key.decode()), orjson.dumps(record), ttl=self._retention
        )
        return refund

    async def lookup(self, idempotency_key: str) -> Charge | None:
        record = await self._load_charge(idempotency_key)
        return None if record is None else _charge_of(record)

    async def refunded_amount(self, reference: str) -> Decimal:
        """How much of a charge has been refunded (for tests and the sandbox's own checks)."""
        key = await self._cache.get(self._reference_key(reference))
        record = None if key is None else await self._load_charge(key.decode())
        return Decimal(0) if record is None else Decimal(record["refunded"])

    async def _load_charge(self, idempotency_key: str) -> _ChargeRecord | None:
        raw = await self._cache.get(self._charge_key(idempotency_key))
        if raw is None:
            return None
        record: _ChargeRecord = orjson.loads(raw)
        return record

    @staticmethod
    def _same_charge(record: _ChargeRecord, amount: Decimal, currency: str) -> Charge:
        if Decimal(record["amount"]) != amount or record["currency"] != currency:
            raise PaymentRejected("sandbox: idempotency key reused for a different amount")
        return _charge_of(record)

    @staticmethod
    def _charge_key(idempotency_key: str) -> str:
        return f"sandbox-pay:charge:{idempotency_key}"

    @staticmethod
    def _reference_key(reference: str) -> str:
        return f"sandbox-pay:ref:{reference}"


def _charge_of(record: _ChargeRecord) -> Charge:
    return Charge(
        reference=record["reference"],
        status="approved",
        amount=Decimal(record["amount"]),
        currency=record["currency"],
        method=record["method"],
    )


def open_provider(name: str, cache: Cache) -> PaymentProvider:
    """The provider ``name`` names (the setting ``payment_provider``); only ``sandbox`` ships."""
    if name == "sandbox":
        return SandboxProvider(cache)
    raise ValueError(f"unknown payment provider {name!r} (available: sandbox)")
