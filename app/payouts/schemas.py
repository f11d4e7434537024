from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from app.money import Money
from app.schemas import Id, Schema, UserId


class RefundKind(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    CREDIT = "credit"
    PROMO_CODE = "promo_code"


class RefundStatus(StrEnum):
    """A refund's life: ``pending`` until the provider answers (credit notes and promo codes are
    ``succeeded`` at once), then ``succeeded`` or ``failed``. Responses keep the literal type below."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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
    # null for whom the policy keeps funding from (the buyer): app/permissions/disclosure.py
    funded_by: str | None
    seller_share: Money | None
    bonus: Money
    status: Literal["pending", "succeeded", "failed"]
    provider_ref: str | None
    failure_reason: str | None
    credit_note_number: str | None = None
    promo_code: str | None = None
    reason: str
    created_at: datetime
    updated_at: datetime


class CreditNoteRead(msgspec.Struct, kw_only=True):
    number: str
    order_id: str
    refund_id: str
    amount: Money
    bonus: Money
    created_at: datetime


class CreditRead(msgspec.Struct, kw_only=True):
    buyer_id: str
    balance: Money
    credit_notes: list[CreditNoteRead]


class CreditRedemptionCreate(Schema):
    order_id: Id
    amount: Money


class CreditRedemptionRead(msgspec.Struct, kw_only=True):
    redemption_id: str
    buyer_id: str
    order_id: str
    amount: Money
    balance: Money
    created_at: datetime


class PromoRedemptionCreate(Schema):
    buyer_id: UserId
    order_id: Id


class PromoRedemptionRead(msgspec.Struct, kw_only=True):
    code: str
    buyer_id: str
    order_id: str
    value: Money
    redeemed_at: datetime


# "accepted" marks events received before outcomes were recorded.
ProviderEventStatus = Literal["applied", "ignored", "rejected", "accepted"]


class ProviderEventRead(msgspec.Struct, kw_only=True):
    """A payment provider webhook event and what came of it (finance reads the rejected ones)."""

    event_id: str
    type: str
    status: ProviderEventStatus
    reason: str | None  # for rejected events: event.malformed, event.amount_mismatch, ...
    detail: str | None
    provider_refund_id: str | None
    charge_id: str | None
    amount: Money | None
    order_id: str | None
    refund_id: str | None
    received_at: datetime


class PayoutStatus(StrEnum):
    """A payout's life: ``blocked`` while its shop has no connected account, ``pending`` until the
    provider answers, then ``paid`` or ``failed``."""

    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    BLOCKED = "blocked"


class PayoutRead(msgspec.Struct, kw_only=True):
    payout_id: str
    seller_id: str
    order_id: str
    amount: Money
    debt_netted: Money
    reversed: Money
    status: Literal["pending", "paid", "failed", "blocked"]
    provider_ref: str | None
    failure_reason: str | None
    created_at: datetime
    paid_at: datetime | None


class SellerBalance(msgspec.Struct, kw_only=True):
    currency: str
    held: Money
    frozen: Money
    paid_out: Money
    reversed: Money
    debt: Money
    # Beyond the contract: what the marketplace owes the shop back (an appeal won, a refund failed after
    # its part was taken), paid with its next release; never netted into ``debt`` (never negative).
    owed: Money


class SellerBalanceRead(msgspec.Struct, kw_only=True):
    seller_id: str
    balances: list[SellerBalance]
