"""Idle keep-alive connections: the client side always gives up first.

If a server closed an idle connection first, a request written to it at that moment would be
lost in flight; a POST so lost cannot be retried safely and became a 502 under load (seen in
a benchmark). Marquee's HTTP clients drop idle connections well before its servers do.
"""

from marquee.cli import KEEP_ALIVE_SECONDS
from marquee.platform.transport import IDLE_CONNECTION_SECONDS


def test_servers_keep_idle_connections_well_beyond_what_clients_keep() -> None:
    assert KEEP_ALIVE_SECONDS >= 2 * IDLE_CONNECTION_SECONDS
