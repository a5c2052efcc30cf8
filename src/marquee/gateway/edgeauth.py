"""Who may call a public path: anyone, a signed-in user, or an admin. Pure: no I/O.

The gateway checks this before any upstream is called, so a request without a valid token
never costs a service anything. Services still check auth themselves (defence in depth): this
table only decides what the edge turns away.
"""

from __future__ import annotations

import enum
import re


class Access(enum.Enum):
    """What a request needs at the edge."""

    PUBLIC = "public"  # no token needed
    USER = "user"  # a valid access token, any role
    ADMIN = "admin"  # a valid access token with role admin


# Exact (method, path) pairs anyone may call: the ways to get (and drop) a token.
PUBLIC_CALLS: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/logout"),
    }
)

# Browsing the catalogue is open to all: reads of these paths and everything under them.
PUBLIC_READ_PREFIXES: tuple[str, ...] = ("/api/v1/shows", "/api/v1/sessions", "/api/v1/venues")
READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD"})

# A ticket's QR image: Booking checks the owner or a signed link itself, so a link in an email
# works without a token. One path segment for the ID, nothing after the file name.
_TICKET_QR = re.compile(r"/api/v1/tickets/[^/]+/qr\.png")

ADMIN_PREFIX = "/api/v1/admin"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def required_access(method: str, path: str) -> Access:
    """What ``method`` on ``path`` needs at the edge.

    ``method`` is upper case and ``path`` the decoded URL path without the query. Anything under
    ``/api/v1/admin`` needs an admin whatever the method; the public calls above need nothing;
    every other path needs a signed-in user, so a route nobody listed is protected by default.
    """
    if _under(path, ADMIN_PREFIX):
        return Access.ADMIN
    if (method, path) in PUBLIC_CALLS:
        return Access.PUBLIC
    if method in READ_METHODS:
        for prefix in PUBLIC_READ_PREFIXES:
            if _under(path, prefix):
                return Access.PUBLIC
        if _TICKET_QR.fullmatch(path) or path == "/api/v1/tickets/signing-key":
            return Access.PUBLIC
    return Access.USER
