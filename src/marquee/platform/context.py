"""The current request's ID, carried through every log line, service call and event."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """Keep a well-formed incoming ID (so callers can correlate); otherwise make one."""
    if incoming and _WELL_FORMED.match(incoming):
        return incoming
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()


# The service whose code is running: set per request by each service's middleware and inherited
# by the tasks a service starts, so log lines land in that service's log file.
service_var: ContextVar[str | None] = ContextVar("service", default=None)
