"""Reconciliation's request and response bodies (docs/api.md, Reconciliation)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.money import Money
from app.schemas import Schema

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Status = Literal["running", "done", "failed"]
ItemStatus = Literal["matched", "amount_mismatch", "missing_in_ledger", "missing_in_provider"]


class PeriodCreate(Schema):
    """``POST /v1/reconciliations`` as JSON: the provider's balance transactions created in [from, to)."""

    from_: AwareTime = msgspec.field(name="from")
    to: AwareTime


class Progress(msgspec.Struct, kw_only=True):
    rows: int


class Counts(msgspec.Struct, kw_only=True):
    matched: int
    amount_mismatch: int
    missing_in_ledger: int
    missing_in_provider: int
    ignored: int


class CurrencyTotal(msgspec.Struct, kw_only=True):
    """Per currency, in minor units: the signed sums of the bookable movements each side has (fees and
    ignored rows excluded), and the gross drift, the sum over keys of |provider - ledger| (a net drift of
    zero proves nothing: two breaks can cancel out)."""

    currency: str
    provider_net: int
    ledger_net: int
    gross_drift: int


class ReconciliationRead(msgspec.Struct, kw_only=True, omit_defaults=True):
    reconciliation_id: str
    status: Status
    source: Literal["provider", "file"]
    from_: datetime | None = msgspec.field(default=None, name="from")
    to: datetime | None = None
    progress: Progress
    counts: Counts
    totals: list[CurrencyTotal]
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class Explanation(msgspec.Struct, kw_only=True):
    note: str
    by: str
    at: datetime


class ItemRead(msgspec.Struct, kw_only=True, omit_defaults=True):
    item_id: str
    status: ItemStatus
    provider_id: str
    balance_transaction_id: str | None = None
    type: str
    provider_amount: Money | None = None
    ledger_amount: Money | None = None
    reason: str | None = None
    explanation: Explanation | None = None


class ExplanationCreate(Schema):
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
