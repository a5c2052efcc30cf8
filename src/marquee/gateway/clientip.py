"""Who the client is: the peer address, or X-Forwarded-For when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Parsing an address costs more than the rest of the decision; the same few peers and
# clients come back request after request, so answers are remembered (bounded).
_REMEMBERED = 65536


@lru_cache(maxsize=_REMEMBERED)
def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=_REMEMBERED)
def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address for rate limiting.

    X-Forwarded-For is believed only from a trusted peer, and then walked from the right past
    every trusted hop: the first untrusted address is the client. Anyone can put anything on
    the left of that header, so it is never taken from there.
    """
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _valid(hop):
            return peer
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
