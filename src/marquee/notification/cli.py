"""``marquee notifications``: list the deliveries given up on, and send them again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.notification import service
from marquee.notification.app import MIGRATIONS
from marquee.notification.domain import (
    Delivery,
    DeliveryStatus,
    NotificationError,
    mask_recipient,
)
from marquee.platform import db
from marquee.platform.migrations import upgrade
from marquee.platform.settings import SettingsError, load_settings

app = typer.Typer(
    name="notifications",
    help="Inspect failed emails and text messages, and send them again.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def _fail(message: str, hint: str | None = None) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[dim]{hint}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def _with_database(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` against the notification database (migrated first: harmless when current,
    and a fresh data dir then simply has nothing to list)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), "Fix or unset that environment variable and try again.") from None

    async def run() -> T:
        engine = db.create_engine(
            settings.database_url_for("notification"),
            schema="notification",
            pool_size=1,
            pooler=settings.db_pooler,
        )
        try:
            await upgrade(engine, MIGRATIONS, schema="notification")
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (OSError, ConnectionError) as exc:
        raise _fail(f"the notification database is unreachable: {exc}") from None


def _table(items: list[Delivery], total: int) -> Table:
    table = Table(title=f"Failed notifications ({len(items)} of {total})", title_justify="left")
    for column in ("ID", "Channel", "Kind", "Order", "To", "Attempts", "Created (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("Last error", overflow="fold")
    for item in items:
        table.add_row(
            str(item.id),
            item.channel.value,
            item.kind.value,
            item.order_id,
            mask_recipient(item.channel, item.recipient),
            str(item.attempts),
            f"{item.created_at:%Y-%m-%d %H:%M:%S}",
            item.last_error or "",
        )
    return table


@app.command()
def failed(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many.")] = 50,
) -> None:
    """List the deliveries given up on (newest first), with their last error."""

    async def work(engine: AsyncEngine) -> service.DeliveryPage:
        return await service.all_notifications(
            engine, status=DeliveryStatus.FAILED, page=1, page_size=limit
        )

    found = _with_database(work)
    if not found.items:
        out.print("No failed notifications.")
        return
    out.print(_table(found.items, found.total))
    out.print("Send them again with [bold]marquee notifications retry ID[/] or [bold]--all[/].")


@app.command()
def retry(
    notification_id: Annotated[
        int | None, typer.Argument(help="The failed notification to send again.", min=1)
    ] = None,
    all_failed: Annotated[
        bool, typer.Option("--all", help="Send every failed notification again.")
    ] = False,
) -> None:
    """Make failed deliveries pending again; the running service sends them within seconds."""
    if (notification_id is None) == (not all_failed):
        raise _fail("give one notification ID or --all", "See: marquee notifications failed")

    async def work(engine: AsyncEngine) -> list[int]:
        now = service.utc_now()
        if all_failed:
            return await service.retry_all_failed(engine, now=now)
        assert notification_id is not None
        await service.retry_delivery(engine, notification_id, now=now)
        return [notification_id]

    try:
        ids = _with_database(work)
    except NotificationError as exc:
        raise _fail(str(exc), "See: marquee notifications failed") from None
    if not ids:
        out.print("No failed notifications to retry.")
        return
    out.print(f"Queued {len(ids)} notification(s) for sending: {', '.join(map(str, ids))}")
