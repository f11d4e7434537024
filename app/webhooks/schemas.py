from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from app.schemas import Schema

EVENT_TYPES = (
    "dispute.opened",
    "dispute.updated",
    "dispute.escalated",
    "dispute.decided",
    "dispute.closed",
    "return.shipped",
    "return.received",
    "refund.succeeded",
    "refund.failed",
    "payout.paid",
    "payout.failed",
    "payout.reversed",
    "seller.debt_recorded",
    "seller.credit_recorded",
)


class DeliveryStatus(StrEnum):
    """A delivery is ``pending`` until the endpoint answers 2xx (``succeeded``) or its retries run out
    (``failed``; also when its endpoint is deactivated)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class EndpointCreate(Schema):
    url: Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
    event_types: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES) + 1)]
    secret: Annotated[str, msgspec.Meta(min_length=16, max_length=200)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class EndpointRead(msgspec.Struct, kw_only=True):
    endpoint_id: str
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    created_at: datetime


class EndpointCreated(EndpointRead):
    # Shown once, at creation: receivers verify signatures with it.
    secret: str


class AttemptRead(msgspec.Struct, kw_only=True):
    number: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryRead(msgspec.Struct, kw_only=True):
    delivery_id: str
    event_id: str
    event_type: str
    status: str
    attempts: list[AttemptRead]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str
