"""Which service owns a public path. Pure: no I/O."""

from __future__ import annotations

# Longest prefix first; a prefix matches the path itself or the path followed by "/" or "?".
ROUTES: tuple[tuple[str, str], ...] = (
    ("/api/v1/admin/users", "identity"),
    ("/api/v1/admin/venues", "catalog"),
    ("/api/v1/admin/shows", "catalog"),
    ("/api/v1/admin/sessions", "catalog"),
    ("/api/v1/admin/seat-areas", "catalog"),
    ("/api/v1/admin/orders", "booking"),
    ("/api/v1/admin/refund-requests", "booking"),
    ("/api/v1/admin/checkins", "booking"),
    ("/api/v1/admin/tickets", "booking"),
    ("/api/v1/admin/notifications", "notification"),
    ("/api/v1/auth", "identity"),
    ("/api/v1/users", "identity"),
    ("/api/v1/shows", "catalog"),
    ("/api/v1/sessions", "catalog"),
    ("/api/v1/venues", "catalog"),
    ("/api/v1/orders", "booking"),
    ("/api/v1/tickets", "booking"),
    ("/api/v1/notifications", "notification"),
)


# Built once: the hot path compares against ready-made strings.
_MATCHERS: tuple[tuple[str, str, str], ...] = tuple(
    (prefix, prefix + "/", service) for prefix, service in ROUTES
)


def route(path: str) -> str | None:
    """The service that serves ``path``, or None (not public: unknown or internal-only)."""
    if not path.startswith("/api/v1/") or "/internal" in path or ".." in path:
        return None
    for prefix, under, service in _MATCHERS:
        if path.startswith(under) or path == prefix:
            return service
    return None
