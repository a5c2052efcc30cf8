"""The sandbox payment provider: the token decides, and one idempotency key charges once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marquee.booking.payments import (
    PaymentRejected,
    PaymentTimeout,
    PaymentUnavailable,
    SandboxProvider,
    open_provider,
)
from marquee.platform.cache.memory import MemoryCache


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(MemoryCache())


AMOUNT = Decimal("2560")


async def test_the_seeds_example_token_is_approved(sandbox: SandboxProvider) -> None:
    charge = await sandbox.charge("order-1", AMOUNT, "CNY", "alipay", "alipay_token_xxx")
    assert charge.approved
    assert charge.reference is not None
    assert charge.reference.startswith("sbx_ch_")
    assert (charge.amount, charge.currency, charge.method) == (AMOUNT, "CNY", "alipay")


async def test_a_decline_token_is_declined_with_its_reason_and_moves_no_money(
    sandbox: SandboxProvider,
) -> None:
    charge = await sandbox.charge("order-1", AMOUNT, "CNY", "card", "decline_insufficient_funds")
    assert charge.status == "declined"
    assert charge.reason == "insufficient_funds"
    assert charge.reference is None
    assert await sandbox.lookup("order-1") is None


async def test_after_a_decline_the_same_key_can_still_be_charged(sandbox: SandboxProvider) -> None:
    await sandbox.charge("order-1", AMOUNT, "CNY", "card", "decline")
    charge = await sandbox.charge("order-1", AMOUNT, "CNY", "card", "card_token_ok")
    assert charge.approved


async def test_a_repeated_charge_with_one_key_returns_the_first_and_charges_once(
    sandbox: SandboxProvider,
) -> None:
    first = await sandbox.charge("order-1", AMOUNT, "CNY", "alipay", "alipay_token_xxx")
    again = await sandbox.charge("order-1", AMOUNT, "CNY", "wechat_pay", "another_token")
    assert again == first
    other = await sandbox.charge("order-2", AMOUNT, "CNY", "alipay", "alipay_token_xxx")
    assert other.reference != first.reference


async def test_a_timeout_token_charges_but_loses_the_answer_and_a_retry_finds_the_charge(
    sandbox: SandboxProvider,
) -> None:
    with pytest.raises(PaymentTimeout):
        await sandbox.charge("order-1", AMOUNT, "CNY", "card", "timeout")
    found = await sandbox.lookup("order-1")
    assert found is not None
    assert found.approved
    retried = await sandbox.charge("order-1", AMOUNT, "CNY", "card", "timeout")
    assert retried == found


async def test_an_unavailable_token_fails_without_charging(sandbox: SandboxProvider) -> None:
    with pytest.raises(PaymentUnavailable):
        await sandbox.charge("order-1", AMOUNT, "CNY", "card", "unavailable")
    assert await sandbox.lookup("order-1") is None


async def test_a_key_reused_for_another_amount_is_refused(sandbox: SandboxProvider) -> None:
    await sandbox.charge("order-1", AMOUNT, "CNY", "card", "ok")
    with pytest.raises(PaymentRejected):
        await sandbox.charge("order-1", Decimal("1"), "CNY", "card", "ok")


async def test_a_full_refund_is_idempotent(sandbox: SandboxProvider) -> None:
    charge = await sandbox.charge("order-1", AMOUNT, "CNY", "card", "ok")
    assert charge.reference is not None
    first = await sandbox.refund(charge.reference, AMOUNT)
    again = await sandbox.refund(charge.reference, AMOUNT)
    assert again == first
    assert await sandbox.refunded_amount(charge.reference) == AMOUNT


async def test_partial_refunds_add_up_to_at_most_the_charge(sandbox: SandboxProvider) -> None:
    charge = await sandbox.charge("order-1", Decimal("100.50"), "CNY", "card", "ok")
    assert charge.reference is not None
    await sandbox.refund(charge.reference, Decimal("0.50"))
    await sandbox.refund(charge.reference, Decimal("100"))
    assert await sandbox.refunded_amount(charge.reference) == Decimal("100.50")
    with pytest.raises(PaymentRejected):
        await sandbox.refund(charge.reference, Decimal("0.01"))


async def test_refunding_an_unknown_charge_is_refused(sandbox: SandboxProvider) -> None:
    with pytest.raises(PaymentRejected):
        await sandbox.refund("sbx_ch_nope", AMOUNT)


async def test_two_sandboxes_on_one_store_see_the_same_charges() -> None:
    store = MemoryCache()
    one, two = SandboxProvider(store), SandboxProvider(store)
    first = await one.charge("order-1", AMOUNT, "CNY", "card", "ok")
    assert await two.charge("order-1", AMOUNT, "CNY", "card", "ok") == first


def test_only_the_sandbox_is_shipped() -> None:
    assert open_provider("sandbox", MemoryCache()).name == "sandbox"
    with pytest.raises(ValueError, match="unknown payment provider"):
        open_provider("stripe", MemoryCache())
