"""Alembic environment for the booking service's own tables."""

from alembic import context

from marquee.booking.models import metadata
from marquee.platform.migrations import run_env

run_env(context, metadata)
