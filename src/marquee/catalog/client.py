"""The typed client Booking uses to reach Catalog's inventory (the system of record)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from marquee.platform.transport import ServiceClient

log = logging.getLogger("marquee.catalog.client")


class Availability(BaseModel):
    """One seat area of one session, as CheckAvailability reports it."""

    session_id: str
    area_id: str
    show_id: str
    show_title: str
    venue: str
    area_name: str
    session_starts_at: datetime
    session_ends_at: datetime
    on_sale: bool  # the show is on sale and the session's sale has started and not ended
    price: Decimal
    currency: str
    capacity: int
    reserved: int
    sold: int
    available: int
    per_user_limit: int
    timezone: str = "Asia/Shanghai"  # the venue's; the default answers for older Catalogs


class Reservation(BaseModel):
    reservation_id: str
    session_id: str
    area_id: str
    quantity: int
    status: Literal["held", "confirmed", "released"]
    expires_at: datetime
    unit_price: Decimal
    currency: str
    available: int  # what is left in the area after this call


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """One hold asked for in a batch."""

    reservation_id: str
    session_id: str
    area_id: str
    quantity: int
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /internal/reservations`` (and one item of a batch)."""
        return {
            "reservation_id": self.reservation_id,
            "session_id": self.session_id,
            "area_id": self.area_id,
            "quantity": self.quantity,
            "expires_at": self.expires_at.isoformat(),
        }


class HoldAnswer(BaseModel):
    """One answer of a batch of holds: the hold (``status`` 201 new, 200 replayed), or the
    problem ``reserve`` would have raised for that request alone (``status`` 404, 409...)."""

    reservation_id: str
    status: int
    reservation: Reservation | None = None
    problem: dict[str, Any] | None = None


class HoldBatch(BaseModel):
    answers: list[HoldAnswer]


class CatalogClient(ServiceClient):
    """Inventory calls. Errors arrive as ServiceError with a stable ``code``:
    ``insufficient_inventory`` (409, body has ``available``), ``not_on_sale`` (409),
    ``reservation_released`` (409, body has ``reason``: cancelled / expired / refunded),
    ``reservation_conflict`` (409: the same reservation id asked for other seats),
    ``validation_error`` (422, e.g. an ``expires_at`` in the past), ``not_found`` (404)."""

    service = "catalog"

    async def _timed(self, name: str, method: str, path: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        log.info("Calling Catalog.%s", name)
        try:
            return await self.call(method, path, **kwargs)
        finally:
            log.info("Catalog.%s duration=%dms", name, (time.perf_counter() - started) * 1000)

    async def check_availability(self, session_id: str, area_id: str) -> Availability:
        data = await self._timed(
            "CheckAvailability", "GET", f"/internal/inventory/{session_id}/{area_id}"
        )
        return Availability.model_validate(data)

    async def reserve(
        self,
        reservation_id: str,
        session_id: str,
        area_id: str,
        quantity: int,
        expires_at: datetime,
    ) -> Reservation:
        """Hold seats until ``expires_at``. Idempotent by ``reservation_id``."""
        hold = HoldRequest(reservation_id, session_id, area_id, quantity, expires_at)
        data = await self._timed(
            "ReserveSeats", "POST", "/internal/reservations", json=hold.to_json()
        )
        return Reservation.model_validate(data)

    async def reserve_many(self, holds: Sequence[HoldRequest]) -> list[HoldAnswer]:
        """Many holds in one call (one Catalog transaction); an answer per hold, in order."""
        data = await self._timed(
            "ReserveSeatsBatch",
            "POST",
            "/internal/reservations/batch",
            json={"reservations": [hold.to_json() for hold in holds]},
        )
        return HoldBatch.model_validate(data).answers

    async def confirm(self, reservation_id: str) -> Reservation:
        """The held seats become sold (payment). Idempotent; 409 if the hold was released."""
        data = await self._timed(
            "ConfirmReservation", "POST", f"/internal/reservations/{reservation_id}/confirm"
        )
        return Reservation.model_validate(data)

    async def release(self, reservation_id: str) -> Reservation:
        """Return the seats to stock, whether held (cancel, expiry) or sold (refund).
        Idempotent: releasing twice returns them once."""
        data = await self._timed(
            "ReleaseReservation", "POST", f"/internal/reservations/{reservation_id}/release"
        )
        return Reservation.model_validate(data)
