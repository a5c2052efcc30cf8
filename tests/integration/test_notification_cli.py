"""``marquee notifications failed | retry``, as an operator runs them against the data dir."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee.notification import repository as repo
from marquee.notification.app import MIGRATIONS
from marquee.notification.cli import app
from marquee.notification.domain import Channel, Delivery, DeliveryStatus, Kind
from marquee.platform.broker import Event
from marquee.platform.db import create_engine
from marquee.platform.migrations import upgrade
from marquee.platform.settings import Settings

NOW = datetime(2026, 1, 14, 15, 30, tzinfo=UTC)


def env(data_dir: Path) -> dict[str, str | None]:
    """The operator's environment: this data dir, the default SQLite database, a wide terminal."""
    return {
        "MARQUEE_DATA_DIR": str(data_dir),
        "MARQUEE_DATABASE_URL": None,
        "MARQUEE_NOTIFICATION_DATABASE_URL": None,
        "COLUMNS": "200",
    }


async def _seed(settings: Settings, outcomes: list[DeliveryStatus]) -> list[int]:
    """One email delivery per outcome, for alice@example.com; their ids."""
    engine = create_engine(settings.database_url_for("notification"), schema="notification")
    try:
        await upgrade(engine, MIGRATIONS, schema="notification")
        for n, _ in enumerate(outcomes):
            event = Event(type="orders.created", data={}, id=f"evt-{n}")
            async with engine.begin() as conn:
                await repo.add_event(conn, event, now=NOW)
                await repo.add_delivery(
                    conn,
                    event_id=event.id,
                    channel=Channel.EMAIL,
                    kind=Kind.ORDER_CONFIRMATION,
                    subject="订单确认",
                    user_id="user-1",
                    order_id=f"order-{n}",
                    now=NOW,
                )
        claimed = await repo.claim_due(engine, now=NOW, lease_until=NOW, limit=len(outcomes))
        for item, outcome in zip(claimed, outcomes, strict=True):
            if outcome is DeliveryStatus.SENT:
                await repo.mark_sent(
                    engine, item.delivery.id, item.token, now=NOW, recipient="alice@example.com"
                )
            else:
                await repo.mark_unsent(
                    engine,
                    item.delivery.id,
                    item.token,
                    status=outcome,
                    next_attempt_at=NOW,
                    error="SMTP 127.0.0.1:25: Connection refused",
                    recipient="alice@example.com",
                )
        return [item.delivery.id for item in claimed]
    finally:
        await engine.dispose()


async def _get(settings: Settings, delivery_id: int) -> Delivery:
    engine = create_engine(settings.database_url_for("notification"), schema="notification")
    try:
        found = await repo.get_delivery(engine, delivery_id)
        assert found is not None
        return found
    finally:
        await engine.dispose()


def seed(settings: Settings, outcomes: list[DeliveryStatus]) -> list[int]:
    return asyncio.run(_seed(settings, outcomes))


def status_of(settings: Settings, delivery_id: int) -> DeliveryStatus:
    return asyncio.run(_get(settings, delivery_id)).status


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_failed_lists_only_the_failed_deliveries_with_their_last_error(
    runner: CliRunner, settings: Settings
) -> None:
    seed(settings, [DeliveryStatus.FAILED, DeliveryStatus.SENT, DeliveryStatus.FAILED])

    result = runner.invoke(app, ["failed"], env=env(settings.data_dir))

    assert result.exit_code == 0, result.output
    assert "Failed notifications (2 of 2)" in result.output
    assert "order-0" in result.output
    assert "order-2" in result.output
    assert "order-1" not in result.output
    assert "Connection refused" in result.output
    assert "a***@example.com" in result.output
    assert "alice@example.com" not in result.output


def test_failed_says_so_when_nothing_failed(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["failed"], env=env(tmp_path / "fresh"))
    assert result.exit_code == 0, result.output
    assert "No failed notifications." in result.output


def test_retry_makes_one_failed_delivery_pending_again(
    runner: CliRunner, settings: Settings
) -> None:
    first, second = seed(settings, [DeliveryStatus.FAILED, DeliveryStatus.FAILED])

    result = runner.invoke(app, ["retry", str(first)], env=env(settings.data_dir))

    assert result.exit_code == 0, result.output
    assert f"Queued 1 notification(s) for sending: {first}" in result.output
    assert status_of(settings, first) is DeliveryStatus.PENDING
    assert status_of(settings, second) is DeliveryStatus.FAILED


def test_retry_all_makes_every_failed_delivery_pending_again(
    runner: CliRunner, settings: Settings
) -> None:
    ids = seed(settings, [DeliveryStatus.FAILED, DeliveryStatus.SENT, DeliveryStatus.FAILED])

    result = runner.invoke(app, ["retry", "--all"], env=env(settings.data_dir))

    assert result.exit_code == 0, result.output
    assert "Queued 2 notification(s)" in result.output
    assert [status_of(settings, i) for i in ids] == [
        DeliveryStatus.PENDING,
        DeliveryStatus.SENT,
        DeliveryStatus.PENDING,
    ]


def test_retrying_a_sent_or_unknown_delivery_is_refused_clearly(
    runner: CliRunner, settings: Settings
) -> None:
    [sent] = seed(settings, [DeliveryStatus.SENT])

    not_failed = runner.invoke(app, ["retry", str(sent)], env=env(settings.data_dir))
    unknown = runner.invoke(app, ["retry", "424242"], env=env(settings.data_dir))

    assert not_failed.exit_code == 1
    assert "is sent, not failed" in not_failed.output
    assert unknown.exit_code == 1
    assert "no notification with id 424242" in unknown.output
    assert status_of(settings, sent) is DeliveryStatus.SENT


@pytest.mark.parametrize("args", [["retry"], ["retry", "1", "--all"]])
def test_retry_needs_exactly_one_id_or_all(
    runner: CliRunner, settings: Settings, args: list[str]
) -> None:
    result = runner.invoke(app, args, env=env(settings.data_dir))
    assert result.exit_code == 1
    assert "give one notification ID or --all" in result.output
