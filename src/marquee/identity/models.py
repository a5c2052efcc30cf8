"""The identity service's tables; no other service reads them."""

from marquee.platform.db import new_metadata

metadata = new_metadata()
