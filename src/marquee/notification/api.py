"""HTTP routes: the user's own notifications, and failed deliveries for operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from marquee.notification import service
from marquee.notification.domain import (
    DeliveryNotFoundError,
    DeliveryStatus,
    NotFailedError,
    NotificationError,
)
from marquee.notification.schemas import (
    AdminNotificationOut,
    AdminNotificationPage,
    NotificationOut,
    NotificationPage,
)
from marquee.platform.app import engine_of
from marquee.platform.auth import AdminUser, CurrentUser
from marquee.platform.contract import errors
from marquee.platform.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["notifications"])

Engine = Annotated[AsyncEngine, Depends(engine_of)]
PageNumber = Annotated[int, Query(ge=1, le=100_000, description="1-based page number.")]
PageSize = Annotated[int, Query(ge=1, le=100, description="Items per page.")]

# Every domain error this API can meet, and the problem it becomes.
PROBLEMS: dict[type[NotificationError], tuple[int, str]] = {
    DeliveryNotFoundError: (404, "notification_not_found"),
    NotFailedError: (409, "notification_not_failed"),
}


def problem(exc: NotificationError) -> Problem:
    status, code = PROBLEMS.get(type(exc), (500, "internal_error"))
    return Problem(status, code, str(exc))


@router.get("/notifications", response_model=NotificationPage, responses=errors(401))
async def my_notifications(
    user: CurrentUser, engine: Engine, page: PageNumber = 1, page_size: PageSize = 20
) -> NotificationPage:
    """The caller's own emails and text messages, newest first, with their delivery status."""
    found = await service.notifications_of(engine, user.user_id, page=page, page_size=page_size)
    return NotificationPage(
        notifications=[NotificationOut.of(item) for item in found.items],
        page=found.page,
        page_size=found.page_size,
        total=found.total,
    )


@router.get(
    "/admin/notifications", response_model=AdminNotificationPage, responses=errors(401, 403)
)
async def all_notifications(
    _admin: AdminUser,
    engine: Engine,
    status: Annotated[DeliveryStatus | None, Query(description="Only this status.")] = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> AdminNotificationPage:
    """Every user's deliveries, newest first; ``?status=failed`` for the ones given up on."""
    found = await service.all_notifications(engine, status=status, page=page, page_size=page_size)
    return AdminNotificationPage(
        notifications=[AdminNotificationOut.of(item) for item in found.items],
        page=found.page,
        page_size=found.page_size,
        total=found.total,
    )


@router.post(
    "/admin/notifications/{notification_id}/retry",
    response_model=AdminNotificationOut,
    responses=errors(401, 403, 404, 409),
)
async def retry_notification(
    _admin: AdminUser,
    engine: Engine,
    notification_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> AdminNotificationOut:
    """Send a failed delivery again (with a fresh attempt budget)."""
    try:
        delivery = await service.retry_delivery(engine, notification_id, now=service.utc_now())
    except NotificationError as exc:
        raise problem(exc) from None
    return AdminNotificationOut.of(delivery)
