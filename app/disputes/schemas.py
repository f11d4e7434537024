from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

from app.money import Money
from app.schemas import Id, Schema

Note = Annotated[str, msgspec.Meta(min_length=1, max_length=5_000)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]


class Reason(StrEnum):
    NOT_RECEIVED = "not_received"
    DAMAGED = "damaged"
    NOT_AS_DESCRIBED = "not_as_described"
    DEFECTIVE = "defective"
    WRONG_ITEM = "wrong_item"
    MISSING_PARTS = "missing_parts"
    WITHDRAWAL = "withdrawal"
    OTHER = "other"


class ResolutionType(StrEnum):
    REFUND_FULL = "refund_full"
    REFUND_PARTIAL = "refund_partial"
    CREDIT = "credit"
    PROMO_CODE = "promo_code"
    REPLACEMENT = "replacement"
    REPAIR = "repair"
    DENY = "deny"


class Requested(Schema):
    type: ResolutionType
    amount: Money | None = None


class DisputeLineIn(Schema):
    line_id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class DisputeCreate(Schema):
    order_id: Id
    reason: Reason
    requested: Requested
    description: Text
    lines: Annotated[list[DisputeLineIn], msgspec.Meta(max_length=200)] | None = None


class Resolution(Schema):
    type: ResolutionType
    amount: Money | None = None
    return_required: bool = False
    funded_by: Literal["seller", "operator", "split"] = "seller"
    seller_share: Money | None = None
    bonus_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    at_fault: Literal["seller", "buyer", "carrier", "operator", "none"] | None = None


# --- actions: one object tagged by "action" --------------------------------------------------------------


class ActionBody(Schema, tag_field="action"):
    pass


class Propose(ActionBody, tag="propose"):
    resolution: Resolution


class AcceptOffer(ActionBody, tag="accept_offer"):
    pass


class RejectOffer(ActionBody, tag="reject_offer"):
    note: Note | None = None


class AcceptClaim(ActionBody, tag="accept_claim"):
    # The seller grants what the buyer asked for; a return may be asked in exchange.
    return_required: bool = False


class Escalate(ActionBody, tag="escalate"):
    note: Note


class Claim(ActionBody, tag="claim"):
    pass


class Release(ActionBody, tag="release"):
    note: Note | None = None


class RequestInfo(ActionBody, tag="request_info"):
    party: Literal["buyer", "seller"]
    question: Text


class Decide(ActionBody, tag="decide"):
    resolution: Resolution
    rationale: Text


class MarkReturned(ActionBody, tag="mark_returned"):
    carrier: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    tracking_number: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class ConfirmReturn(ActionBody, tag="confirm_return"):
    condition: Literal["ok", "damaged", "missing"]
    note: Note | None = None


class Reopen(ActionBody, tag="reopen"):
    note: Note


class Appeal(ActionBody, tag="appeal"):
    note: Note


class Withdraw(ActionBody, tag="withdraw"):
    note: Note | None = None


AnyAction = (
    Propose
    | AcceptOffer
    | RejectOffer
    | AcceptClaim
    | Escalate
    | Claim
    | Release
    | RequestInfo
    | Decide
    | MarkReturned
    | ConfirmReturn
    | Reopen
    | Appeal
    | Withdraw
)


class CsatCreate(Schema):
    score: Annotated[int, msgspec.Meta(ge=1, le=5)]
    comment: Annotated[str, msgspec.Meta(max_length=5_000)] | None = None


# --- responses ------------------------------------------------------------------------------------------


class Deadlines(msgspec.Struct, kw_only=True, omit_defaults=True):
    respond_by: datetime | None = None
    return_by: datetime | None = None
    reopen_until: datetime | None = None


class Sla(msgspec.Struct, kw_only=True):
    first_response_due: datetime | None
    resolution_due: datetime | None
    breached: bool


class DisputeRead(msgspec.Struct, kw_only=True):
    dispute_id: str
    order_id: str
    buyer_id: str
    seller_id: str
    status: str
    outcome: str | None
    reason: str
    requested: dict[str, Any]
    amount: Money
    offer: dict[str, Any] | None
    resolution: dict[str, Any] | None
    priority: Literal["critical", "standard"]
    assignee_id: str | None
    thread_id: str
    lines: list[DisputeLineIn]
    next_action_by: str | None
    deadlines: Deadlines
    allowed_actions: list[str]
    return_shipment: dict[str, Any] | None
    return_condition: str | None
    sla: Sla | None
    overdue: bool
    refund_failed: bool
    created_at: datetime
    updated_at: datetime


class EventActor(msgspec.Struct, kw_only=True):
    id: str | None  # null where the caller may not see staff ids (app/permissions/disclosure.py)
    role: str
    name: str


class DisputeEventRead(msgspec.Struct, kw_only=True):
    event_id: int
    actor: EventActor
    action: str
    from_status: str | None
    to_status: str
    data: dict[str, Any]
    at: datetime
