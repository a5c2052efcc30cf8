"""The booking service's app: its routes, database and background work."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from marquee.platform.app import create_service_app
from marquee.platform.kernel import Kernel

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(kernel: Kernel) -> FastAPI:
    return create_service_app("booking", kernel, migrations=MIGRATIONS)
