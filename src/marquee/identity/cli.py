"""``marquee admin``: account operations against the configured identity database."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError

from marquee.identity.app import MIGRATIONS
from marquee.identity.domain import EmailTakenError, IdentityError, Role, User, normalise_email
from marquee.identity.passwords import Passwords
from marquee.identity.service import NewAccount, create_account, utc_now
from marquee.platform import db
from marquee.platform.migrations import upgrade
from marquee.platform.settings import Settings, SettingsError, load_settings

admin = typer.Typer(
    name="admin",
    help="Operate Marquee's accounts directly in the identity database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


@admin.callback()
def _group() -> None:
    """Operate Marquee's accounts directly in the identity database."""


def _fail(message: str, hint: str | None = None) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[dim]{escape(hint)}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@admin.command("create-user")
def create_user(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            help="The password (asked for, hidden, when left out: safer than the shell history).",
        ),
    ] = None,
    full_name: Annotated[
        str | None,
        typer.Option("--full-name", help="The name shown for the account (default: from email)."),
    ] = None,
    make_admin: Annotated[
        bool, typer.Option("--admin", help="Give the account the admin role.")
    ] = False,
) -> None:
    """Create an account (a customer, or an admin with --admin). Migrates the database first."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), "Fix or unset that environment variable and try again.") from None
    try:
        normalise_email(email)  # a typo is reported before anyone types a password
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    role: Role = "admin" if make_admin else "customer"
    cmd = NewAccount(
        email=email,
        password=password,
        full_name=full_name if full_name is not None else email.partition("@")[0],
        role=role,
    )
    try:
        user = asyncio.run(_create(settings, cmd))
    except EmailTakenError:
        raise _fail(
            f"email already registered: {email.strip()}",
            "Pick another address, or sign in with the existing account.",
        ) from None
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    except (OSError, DBAPIError) as exc:
        where = settings.database_url_for("identity").rsplit("@", 1)[-1]
        raise _fail(
            f"identity database unreachable at {where}: {exc}",
            "Start PostgreSQL, or unset MARQUEE_DATABASE_URL to use SQLite.",
        ) from None
    out.print(
        f"[green]✓[/] created {user.role} [bold]{escape(user.email)}[/] (user id {user.id})",
        highlight=False,
    )


async def _create(settings: Settings, cmd: NewAccount) -> User:
    engine = db.create_engine(
        settings.database_url_for("identity"),
        schema="identity",
        pool_size=1,
        pooler=settings.db_pooler,
    )
    try:
        await upgrade(engine, MIGRATIONS, schema="identity")
        return await create_account(engine, Passwords(), cmd, now=utc_now())
    finally:
        await engine.dispose()
