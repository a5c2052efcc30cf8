"""argon2id password hashing, run on worker threads so the event loop keeps serving."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from marquee.identity.domain import breached_passwords


class Passwords:
    """Hash and verify passwords with argon2id (argon2-cffi's RFC 9106 low-memory defaults).

    One hash costs tens of milliseconds of CPU and 64 MiB, so every call runs in
    ``asyncio.to_thread``: a burst of sign-ins queues on the thread pool instead of freezing
    every other request on the loop.

    ``verify(None, ...)`` checks against a dummy hash made with the same parameters, so an
    unknown email costs the same time as a wrong password and the two cannot be told apart.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def warm(self) -> None:
        """Make the dummy hash and load the breached-password list now, so the first sign-in
        or registration is not slower."""
        await self._dummy_hash()
        await asyncio.to_thread(breached_passwords)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True iff ``stored`` is a hash of ``password``; always costs one full verification."""
        target = stored if stored is not None else await self._dummy_hash()
        matched = await asyncio.to_thread(self._verify, target, password)
        return matched and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            # Racing first callers may each make one; any of them is as good as the others.
            self._dummy = await self.hash(secrets.token_urlsafe(32))
        return self._dummy
