"""The web storefront and organiser console: a small static front end the gateway serves.

Everything the pages show comes from the public API through the same gateway as any other
client; this package only ships the files (``static/``) and the table that serves them
(``site.Storefront``).
"""

from marquee.web.site import Asset, Storefront

__all__ = ["Asset", "Storefront"]
