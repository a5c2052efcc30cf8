"""Alembic environment for the identity service's own tables."""

from alembic import context

from marquee.identity.models import metadata
from marquee.platform.migrations import run_env

run_env(context, metadata)
