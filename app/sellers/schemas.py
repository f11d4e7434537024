from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from app.money import Money
from app.schemas import Schema

ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class RefundOn(StrEnum):
    SHIPMENT = "shipment"
    RECEIPT = "receipt"


class SellerSettings(Schema):
    refund_budget: Money | None = None
    refund_on: RefundOn = RefundOn.RECEIPT
    auto_accept_below: Money | None = None


class SellerUpsert(Schema):
    name: ShortText
    stripe_account_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    settings: SellerSettings | None = None


class SellerRead(Schema):
    seller_id: str
    name: str
    stripe_account_id: str | None
    settings: SellerSettings
    created_at: datetime
    updated_at: datetime
