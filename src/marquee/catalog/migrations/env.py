"""Alembic environment for the catalog service's own tables."""

from alembic import context

from marquee.catalog.models import metadata
from marquee.platform.migrations import run_env

run_env(context, metadata)
