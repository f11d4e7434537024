"""KPI reports and seller scorecards: who may ask for which shop, and the figures assembled from the
formulas of ``kpis.py`` (a handful of aggregate queries; no dispute is loaded to be counted).

Scoping follows the policy's ``report`` lines: operator staff and finance read any shop or all; a shop's
members only their own shop (a seller asking for another shop's KPIs gets its own; another shop's
scorecard is a 404, as if it did not exist).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth import Actor
from app.errors import Forbidden, NotFound, ValidationFailed
from app.money import Money
from app.permissions.enforcer import Resource, is_allowed, may_ever, relations_for
from app.reports import kpis
from app.reports.kpis import Window
from app.reports.schemas import (
    Alert,
    Csat,
    DecisionsByFault,
    KpiReport,
    Percentiles,
    RefundFigure,
    SellerMetrics,
)
from app.sellers.models import Seller
from app.settings import Settings

DEFAULT_DAYS = 30
MAX_DAYS = 366


def window_of(start: datetime | None, end: datetime | None, *, now: datetime, seller_id: str | None) -> Window:
    """``[from, to)``: ``to`` defaults to now, ``from`` to 30 days before ``to``; at most 366 days."""
    end = _utc(end) if end is not None else now
    start = _utc(start) if start is not None else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise ValidationFailed("from must be before to", field="query:from")
    if end - start > timedelta(days=MAX_DAYS):
        raise ValidationFailed(f"a report spans at most {MAX_DAYS} days", field="query:from")
    return Window(start=start, end=end, seller_id=seller_id)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def kpi_scope(actor: Actor, seller_id: str | None) -> str | None:
    """The shop a KPI report is about: a shop's member always gets its own, whatever it asked."""
    if not may_ever(actor, "report", "read"):
        raise Forbidden(f"a {actor.role} may not read reports")
    if "any" in relations_for(actor.role.value, "report", "read"):
        return seller_id
    return actor.seller_id


async def require_shop(session: AsyncSession, actor: Actor, seller_id: str) -> None:
    """A scorecard: the shop exists and the caller may read its reports (else 404, no existence leak)."""
    if not may_ever(actor, "report", "read"):
        raise Forbidden(f"a {actor.role} may not read reports")
    allowed = is_allowed(actor, Resource(kind="report", seller_id=seller_id), "read")
    if not allowed or await session.get(Seller, seller_id) is None:
        raise NotFound("no such seller")


# --- assembling ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """The raw counts of one report (or one shop), from which every rate is a division."""

    orders: int
    counts: Any  # a row of kpis.dispute_counts
    durations: Any  # a row of kpis.duration_percentiles
    refunds: list[RefundFigure]
    refunded: int = 0  # a scorecard's: orders with a refund, orders with a dispute at the shop's fault
    defective: int = 0


async def rows_of(
    session: AsyncSession, reader: AsyncEngine | None, statements: dict[str, Select[*tuple[Any, ...]]]
) -> dict[str, Sequence[Any]]:
    """Each statement's rows. With a ``reader`` (PostgreSQL: the reports' own small pool, app/main.py) the
    statements run at once, each on a connection it holds for that one statement and never while waiting
    for another (so reports running together cannot starve each other), each in its own snapshot. Without
    (SQLite, one writer and one file), in turn on the request's session."""
    if reader is None:
        return {name: (await session.execute(statement)).all() for name, statement in statements.items()}

    async def run(statement: Select[*tuple[Any, ...]]) -> Sequence[Any]:
        async with reader.connect() as connection:
            return (await connection.execute(statement)).all()

    results = await asyncio.gather(*(run(statement) for statement in statements.values()))
    return dict(zip(statements, results, strict=True))


async def _figures(
    session: AsyncSession, reader: AsyncEngine | None, window: Window, now: datetime, *, scorecard: bool = False
) -> Figures:
    dialect = (reader or session.get_bind()).dialect.name
    statements = {
        "orders": kpis.order_counts(window),
        "counts": kpis.dispute_counts(window, now),
        "durations": kpis.duration_percentiles(window, dialect=dialect),
        "refunds": kpis.refund_breakdown(window),
    }
    if scorecard:
        statements |= {"refunded": kpis.orders_refunded(window), "defective": kpis.orders_defective(window)}
    rows = await rows_of(session, reader, statements)

    def scalar(name: str) -> int:
        found = rows.get(name)
        return int(found[0][0] or 0) if found else 0

    return Figures(
        orders=scalar("orders"),
        counts=rows["counts"][0],
        durations=rows["durations"][0],
        refunds=[
            RefundFigure(currency=r[0], kind=r[1], funded_by=r[2], count=r[3], amount=Money(int(r[4]), r[0]))
            for r in rows["refunds"]
        ],
        refunded=scalar("refunded"),
        defective=scalar("defective"),
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _percentiles(figures: Figures, kind: str) -> Percentiles:
    p50, p90 = (getattr(figures.durations, f"{kind}_{name}") for name in kpis.PERCENTILES)
    return Percentiles(p50=_seconds(p50), p90=_seconds(p90))


def _report_fields(figures: Figures, window: Window) -> dict[str, Any]:
    c = figures.counts
    return {
        "from_": window.start,
        "to": window.end,
        "seller_id": window.seller_id,
        "orders": figures.orders,
        "disputes_opened": c.opened,
        "disputes_per_100_orders": kpis.ratio(c.opened, figures.orders, 100.0),
        "first_response_seconds": _percentiles(figures, "first_response"),
        "resolution_seconds": _percentiles(figures, "resolution"),
        "first_contact_resolution_rate": kpis.ratio(c.first_contact, c.resolved),
        "reopen_rate": kpis.ratio(c.reopened, c.resolved),
        "sla_breach_rate": kpis.ratio(c.breached, c.escalated),
        "csat": Csat(
            average=None if c.csat_average is None else round(float(c.csat_average), 6),
            responses=c.csat_responses,
            satisfied_rate=kpis.ratio(c.csat_satisfied, c.csat_responses),
        ),
        "refunds": figures.refunds,
        "decisions_by_fault": DecisionsByFault(**{f: getattr(c, f"fault_{f}") for f in kpis.FAULTS}),
    }


async def kpi_report(
    session: AsyncSession, *, window: Window, now: datetime, reader: AsyncEngine | None = None
) -> KpiReport:
    return KpiReport(**_report_fields(await _figures(session, reader, window, now), window))


async def seller_metrics(
    session: AsyncSession, *, window: Window, now: datetime, settings: Settings, reader: AsyncEngine | None = None
) -> SellerMetrics:
    figures = await _figures(session, reader, window, now, scorecard=True)
    rates = Rates(
        orders=figures.orders,
        return_rate=kpis.ratio(figures.counts.returns, figures.orders),
        refund_rate=kpis.ratio(figures.refunded, figures.orders),
        defect_rate=kpis.ratio(figures.defective, figures.orders),
        first_response_p90=_percentiles(figures, "first_response").p90,
    )
    return SellerMetrics(
        **_report_fields(figures, window),
        return_rate=rates.return_rate,
        refund_rate=rates.refund_rate,
        defect_rate=rates.defect_rate,
        alerts=alerts_of(rates, settings),
    )


# --- alerts --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rates:
    """What a shop's alerts are judged on."""

    orders: int
    return_rate: float | None
    refund_rate: float | None
    defect_rate: float | None
    first_response_p90: float | None


def thresholds(settings: Settings) -> dict[str, float]:
    return {
        "return_rate": settings.alert_return_rate,
        "refund_rate": settings.alert_refund_rate,
        "defect_rate": settings.alert_defect_rate,
        "first_response_p90_seconds": float(settings.alert_first_response_p90_seconds),
    }


def alerts_of(rates: Rates, settings: Settings) -> list[Alert]:
    """Each figure strictly above its threshold, once the shop has enough orders in the window."""
    if rates.orders < settings.alert_min_orders:
        return []
    values = {
        "return_rate": rates.return_rate,
        "refund_rate": rates.refund_rate,
        "defect_rate": rates.defect_rate,
        "first_response_p90_seconds": rates.first_response_p90,
    }
    return [
        Alert(metric=metric, value=value, threshold=threshold)
        for metric, threshold in thresholds(settings).items()
        if (value := values[metric]) is not None and value > threshold
    ]
