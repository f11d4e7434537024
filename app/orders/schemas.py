from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from app.money import Currency, Money
from app.schemas import Id, Schema, UserId

ProviderRef = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class OrderLineIn(Schema):
    line_id: Id
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    unit_price: Money


class Payment(Schema):
    provider: Literal["stripe"]
    charge_id: ProviderRef
    payment_intent_id: ProviderRef | None = None
    customer_id: ProviderRef | None = None


class OrderUpsert(Schema):
    buyer_id: UserId
    seller_id: Id
    currency: Currency
    total: Money
    commission: Money
    lines: Annotated[list[OrderLineIn], msgspec.Meta(min_length=1, max_length=500)]
    payment: Payment
    delivered_at: AwareDatetime | None = None


class EscrowStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"
    FROZEN = "frozen"


class Escrow(Schema):
    status: EscrowStatus
    release_at: datetime | None


class OrderRead(Schema):
    order_id: str
    buyer_id: str
    seller_id: str
    currency: str
    total: Money
    # The marketplace's commission is the seller's and operator's business: null for the buyer.
    commission: Money | None
    lines: list[OrderLineIn]
    payment: Payment | None
    delivered_at: datetime | None
    refunded: Money
    refundable: Money
    escrow: Escrow
    created_at: datetime
    updated_at: datetime
