"""What the reports answer (docs/api.md, Reports). Rates are fractions in [0, 1]; a figure with nothing to
measure is null, never 0."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.money import Money


class Percentiles(msgspec.Struct, kw_only=True):
    """Nearest-rank percentiles of durations in seconds (null: no dispute to measure)."""

    p50: float | None
    p90: float | None


class Csat(msgspec.Struct, kw_only=True):
    average: float | None
    responses: int
    satisfied_rate: float | None  # the share of 4 and 5


class RefundFigure(msgspec.Struct, kw_only=True):
    currency: str
    kind: str
    funded_by: str
    count: int
    amount: Money


class DecisionsByFault(msgspec.Struct, kw_only=True):
    seller: int
    buyer: int
    carrier: int
    operator: int
    none: int


class KpiReport(msgspec.Struct, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    seller_id: str | None
    orders: int
    disputes_opened: int
    disputes_per_100_orders: float | None
    first_response_seconds: Percentiles
    resolution_seconds: Percentiles
    first_contact_resolution_rate: float | None
    reopen_rate: float | None
    sla_breach_rate: float | None
    csat: Csat
    refunds: list[RefundFigure]
    decisions_by_fault: DecisionsByFault


class Alert(msgspec.Struct, kw_only=True):
    metric: str
    value: float
    threshold: float


class SellerMetrics(KpiReport, kw_only=True):
    return_rate: float | None
    refund_rate: float | None
    defect_rate: float | None
    alerts: list[Alert]
