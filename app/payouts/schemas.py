from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from app.money import Money
from app.schemas import Id, Schema


class RefundKind(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    CREDIT = "credit"
    PROMO_CODE = "promo_code"


class RefundCreate(Schema):
    order_id: Id
    kind: RefundKind
    funded_by: Literal["seller", "operator", "split"]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    amount: Money | None = None
    seller_share: Money | None = None
    bonus_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    dispute_id: Id | None = None


class RefundRead(msgspec.Struct, kw_only=True):
    refund_id: str
    order_id: str
    dispute_id: str | None
    kind: str
    amount: Money
    funded_by: str
    seller_share: Money
    status: Literal["pending", "succeeded", "failed"]
    provider_ref: str | None
    failure_reason: str | None
    reason: str
    created_at: datetime
    updated_at: datetime
