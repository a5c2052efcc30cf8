"""The typed client other services use to reach Identity (``GetProfile``)."""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel

from marquee.platform.transport import ServiceClient

log = logging.getLogger("marquee.identity.client")


class Profile(BaseModel):
    user_id: str
    email: str
    full_name: str
    phone: str | None = None
    role: str
    locale: str = "zh-CN"


class IdentityClient(ServiceClient):
    service = "identity"

    async def get_profile(self, user_id: str) -> Profile:
        """The user's profile; raises ServiceError (404 ``user_not_found``) for unknown users."""
        started = time.perf_counter()
        log.info("Calling Identity.GetProfile user=%s", user_id)
        data = await self.call("GET", f"/internal/users/{user_id}")
        log.info(
            "Identity.GetProfile user=%s duration=%dms",
            user_id,
            (time.perf_counter() - started) * 1000,
        )
        return Profile.model_validate(data)
