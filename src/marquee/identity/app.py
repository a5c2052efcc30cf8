"""The identity service's app: its routes, database and the admin bootstrap."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from argon2 import PasswordHasher
from fastapi import FastAPI

from marquee.identity.api import install_error_table, internal, router
from marquee.identity.domain import IdentityError
from marquee.identity.passwords import Passwords
from marquee.identity.service import IdentityService
from marquee.platform.app import create_service_app
from marquee.platform.kernel import Kernel, StartupError

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("marquee.identity")


def create_app(kernel: Kernel, *, hasher: PasswordHasher | None = None) -> FastAPI:
    """Identity as an app. ``hasher`` overrides argon2's default cost (benchmarks, tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = IdentityService(app.state.engine, kernel.cache, kernel.tokens, Passwords(hasher))
        await service.passwords.warm()
        await bootstrap_admin(service, kernel)
        app.state.identity = service
        yield

    app = create_service_app(
        "identity", kernel, routers=[router, internal], migrations=MIGRATIONS, lifespan=lifespan
    )
    install_error_table(app)
    return app


async def bootstrap_admin(service: IdentityService, kernel: Kernel) -> None:
    """Ensure the configured admin exists and has the admin role (see ``ensure_admin``: an
    existing account keeps its password). Nothing happens unless both settings are set."""
    settings = kernel.settings
    if not (settings.admin_email and settings.admin_password):
        if settings.admin_email or settings.admin_password:
            log.warning(
                "Admin bootstrap skipped: set both MARQUEE_ADMIN_EMAIL and MARQUEE_ADMIN_PASSWORD"
            )
        return
    try:
        outcome = await service.ensure_admin(settings.admin_email, settings.admin_password)
    except IdentityError as exc:
        raise StartupError(
            f"MARQUEE_ADMIN_EMAIL / MARQUEE_ADMIN_PASSWORD cannot make the admin account: {exc}"
        ) from None
    log.info("Admin %s: %s", settings.admin_email, outcome.value)
