"""Alembic environment for the notification service's own tables."""

from typing import cast

from alembic import context
from alembic.runtime.environment import EnvironmentContext

from marquee.notification.models import metadata
from marquee.platform.migrations import run_env

# ``alembic.context`` is the running EnvironmentContext, exposed as a module proxy.
run_env(cast(EnvironmentContext, context), metadata)
