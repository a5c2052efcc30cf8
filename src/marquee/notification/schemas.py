"""The notification API's response models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from marquee.notification.domain import Channel, Delivery, DeliveryStatus, Kind


class NotificationOut(BaseModel):
    """One message sent (or to be sent) to the user about one of their orders."""

    notification_id: int
    event_id: str
    order_id: str
    channel: Channel
    kind: Kind
    status: DeliveryStatus
    subject: str
    recipient: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> NotificationOut:
        return cls(
            notification_id=delivery.id,
            event_id=delivery.event_id,
            order_id=delivery.order_id,
            channel=delivery.channel,
            kind=delivery.kind,
            status=delivery.status,
            subject=delivery.subject,
            recipient=delivery.recipient,
            attempts=delivery.attempts,
            created_at=delivery.created_at,
            sent_at=delivery.sent_at,
            next_attempt_at=(
                delivery.next_attempt_at if delivery.status is DeliveryStatus.PENDING else None
            ),
        )


class AdminNotificationOut(NotificationOut):
    """What an operator sees besides: whose it is and why the last attempt failed."""

    user_id: str
    last_error: str | None

    @classmethod
    def of(cls, delivery: Delivery) -> AdminNotificationOut:
        base = NotificationOut.of(delivery).model_dump()
        return cls(**base, user_id=delivery.user_id, last_error=delivery.last_error)


class NotificationPage(BaseModel):
    notifications: list[NotificationOut]
    page: int
    page_size: int
    total: int


class AdminNotificationPage(BaseModel):
    notifications: list[AdminNotificationOut]
    page: int
    page_size: int
    total: int
