"""Alembic environment for the notification service's own tables."""

from alembic import context

from marquee.notification.models import metadata
from marquee.platform.migrations import run_env

run_env(context, metadata)
