"""Who the client is: the peer address, or X-Forwarded-For when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=65536)
def _parsed(address: str) -> Address | None:
    """The address, or None when it is not one. Parsing costs more than the rest of the
    decision, and the same few peers and clients come back request after request."""
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    ip = _parsed(address)
    return ip is not None and any(ip in network for network in networks)


def client_ip(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address for rate limiting.

    X-Forwarded-For is believed only from a trusted peer, and then walked from the right past
    every trusted hop: the first untrusted address is the client. Anyone can put anything on
    the left of that header, so it is never taken from there.
    """
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if _parsed(hop) is None:
            return peer
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
