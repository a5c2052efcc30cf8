"""``marquee admin create-user`` against the configured database, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from typer.testing import CliRunner, Result

from marquee.identity.app import create_app
from marquee.identity.cli import admin
from marquee.platform.auth import TokenService
from marquee.platform.kernel import Kernel
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport


def run(data_dir: Path, *args: str, stdin: str | None = None, **env: str) -> Result:
    """The command in a clean environment: only the MARQUEE_ variables given here."""
    environment: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith("MARQUEE_")
    }
    environment |= {"MARQUEE_DATA_DIR": str(data_dir), **env}
    return CliRunner().invoke(admin, list(args), input=stdin, env=environment)


def signed_in(settings: Settings, email: str, password: str) -> tuple[int, str | None]:
    """Sign in through an identity app on the same database; (status, role or None).

    The command runs its own event loop (``asyncio.run``), so these tests are synchronous and
    so is this helper."""
    return asyncio.run(_login(settings, email, password))


async def _login(settings: Settings, email: str, password: str) -> tuple[int, str | None]:
    app = create_app(Kernel.from_settings(settings))
    async with LifespanManager(app, startup_timeout=30):
        answer = await AsgiTransport(app).request(
            "POST",
            "/api/v1/auth/login",
            headers=[("content-type", "application/json")],
            body=f'{{"email": "{email}", "password": "{password}"}}'.encode(),
        )
    if answer.status != 200:
        return answer.status, None
    tokens = TokenService(settings.resolved_jwt_secret())
    return answer.status, tokens.verify_access(answer.json()["access_token"]).role


def test_an_operator_creates_an_admin_who_can_sign_in(settings: Settings) -> None:
    result = run(
        settings.data_dir,
        "create-user",
        "Ops@Example.com",
        "--password",
        "OpsPass12345",
        "--full-name",
        "Ops Team",
        "--admin",
    )
    assert result.exit_code == 0, result.output
    assert "created admin ops@example.com" in result.output
    assert signed_in(settings, "ops@example.com", "OpsPass12345") == (200, "admin")


def test_without_admin_the_account_is_a_customer(settings: Settings) -> None:
    result = run(settings.data_dir, "create-user", "bob@example.com", "--password", "BobPass1234")
    assert result.exit_code == 0, result.output
    assert signed_in(settings, "bob@example.com", "BobPass1234") == (200, "customer")


def test_the_password_is_asked_for_twice_when_not_given(settings: Settings) -> None:
    result = run(
        settings.data_dir,
        "create-user",
        "carol@example.com",
        stdin="CarolPass123\nCarolPass123\n",
    )
    assert result.exit_code == 0, result.output
    assert "CarolPass123" not in result.output
    assert signed_in(settings, "carol@example.com", "CarolPass123") == (200, "customer")


def test_an_email_already_registered_is_one_clear_error(settings: Settings) -> None:
    args = ("create-user", "dave@example.com", "--password", "DavePass123")
    assert run(settings.data_dir, *args).exit_code == 0
    again = run(settings.data_dir, "create-user", "DAVE@example.com", "--password", "Other12345")
    assert again.exit_code == 1
    assert "error: email already registered" in again.output
    assert "Traceback" not in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create-user", "erin@example.com", "--password", "short"), "at least 8 characters"),
        (("create-user", "erin@", "--password", "ErinPass123"), "email address"),
    ],
)
def test_bad_details_are_refused_before_anything_is_stored(
    settings: Settings, args: tuple[str, ...], message: str
) -> None:
    result = run(settings.data_dir, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_database_is_one_line_not_a_traceback(settings: Settings) -> None:
    result = run(
        settings.data_dir,
        "create-user",
        "frank@example.com",
        "--password",
        "FrankPass123",
        MARQUEE_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none",
    )
    assert result.exit_code == 1
    assert "identity database unreachable at 127.0.0.1:1/none" in result.output
    assert "Traceback" not in result.output
