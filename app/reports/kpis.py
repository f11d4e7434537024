"""The KPI formulas (docs/api.md, Reports), each written once as SQLAlchemy Core that PostgreSQL and
SQLite both run. Nothing is loaded into Python to be counted: every figure is an aggregate.

The population of a report is the disputes opened in ``[start, end)`` and the orders created in it
(one shop's, or all). Each formula is a function returning a statement; ``per_shop=True`` groups the
same formula by shop (the alerts job evaluates every active shop in one pass). Per-dispute expressions
(durations, the SLA breach) are shared by the aggregates and the CSV export.

Percentiles use the nearest-rank method: of n values sorted ascending, the p-th percentile is the value
of rank ceil(p * n) (p50 of 1, 2, 3, 4 is 2; p90 of 1..10 is 9). That is exactly PostgreSQL's
``PERCENTILE_DISC(p) WITHIN GROUP (ORDER BY value)`` (the first value whose cumulative share reaches p),
which PostgreSQL computes with one sort and no window; SQLite has no such aggregate, so
:func:`nearest_rank` computes the same ranks with window functions (ROW_NUMBER and COUNT OVER). The
hand-computed tests run both (tests/integration/test_kpis.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, and_, case, func, literal, or_, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.disputes import queue
from app.disputes.models import Dispute
from app.orders.models import Order
from app.payouts.models import Refund

FAULTS = ("seller", "buyer", "carrier", "operator", "none")
P50, P90 = (1, 2), (9, 10)  # percentiles as fractions num/den: the rank is ceil(num * n / den)


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    seller_id: str | None = None  # None: every shop


# --- durations -------------------------------------------------------------------------------------------


class seconds_between(FunctionElement[float]):
    """``later - earlier`` in seconds (null when either is null): to the microsecond on PostgreSQL, the
    millisecond on SQLite (julianday); the reports round to the millisecond."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between)
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    # date_part is double precision (EXTRACT is numeric since PostgreSQL 14: several times slower to sort).
    return f"date_part('epoch', {later} - {earlier})"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"ROUND((julianday({later}) - julianday({earlier})) * 86400.0, 3)"


FIRST_RESPONSE_SECONDS = seconds_between(Dispute.first_response_at, Dispute.created_at)
RESOLUTION_SECONDS = seconds_between(Dispute.first_resolved_at, Dispute.created_at)


def percentile_disc(fraction: tuple[int, int], value: ColumnElement[float]) -> ColumnElement[float]:
    """PostgreSQL's nearest rank of ``value`` (nulls left out); ``num / den`` is exact in a double for our
    fractions, and ceil(p * n) is what PostgreSQL takes."""
    num, den = fraction
    return func.percentile_disc(literal(num / den)).within_group(value)


def nearest_rank(
    source: Select[*tuple[Any, ...]], *, partition: Sequence[str], fractions: Mapping[str, tuple[int, int]]
) -> Select[*tuple[Any, ...]]:
    """Nearest-rank percentiles of ``source``'s column ``value`` (nulls left out), one row per group of
    the columns named in ``partition`` (one row, nulls when nothing to rank, without a partition)."""
    inner = source.subquery()
    parts = [inner.c[name] for name in partition]
    ranked = (
        select(
            *parts,
            inner.c.value,
            func.row_number().over(partition_by=parts or None, order_by=inner.c.value).label("rank"),
            func.count().over(partition_by=parts or None).label("n"),
        )
        .where(inner.c.value.is_not(None))
        .subquery()
    )
    groups = [ranked.c[name] for name in partition]
    picks = [
        # ceil(num * n / den) in integer arithmetic: (num * n + den - 1) div den.
        func.min(case((ranked.c.rank == (num * ranked.c.n + (den - 1)) // den, ranked.c.value))).label(name)
        for name, (num, den) in fractions.items()
    ]
    return select(*groups, *picks).group_by(*groups)


# --- the population --------------------------------------------------------------------------------------


def opened_in(window: Window) -> ColumnElement[bool]:
    """The disputes of the report: opened in the window, of its shop."""
    conditions = [Dispute.created_at >= window.start, Dispute.created_at < window.end]
    if window.seller_id is not None:
        conditions.append(Dispute.seller_id == window.seller_id)
    return and_(*conditions)


def created_in(window: Window) -> ColumnElement[bool]:
    """The orders of the report: created in the window, of its shop."""
    conditions = [Order.created_at >= window.start, Order.created_at < window.end]
    if window.seller_id is not None:
        conditions.append(Order.seller_id == window.seller_id)
    return and_(*conditions)


def sla_breached(now: datetime) -> ColumnElement[bool]:
    """The queue's definition of an SLA breach (app/disputes/queue.py), as SQL."""
    return queue.sla_breached_sql(now)


# A dispute that reached `resolved` without ever being escalated (nor reopened, which escalates).
FIRST_CONTACT = and_(Dispute.first_resolved_at.is_not(None), Dispute.first_escalated_at.is_(None))
REOPENED = and_(Dispute.first_resolved_at.is_not(None), or_(Dispute.reopened, Dispute.appealed))


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


def _shop(column: Any, per_shop: bool) -> list[Any]:
    return [column.label("seller_id")] if per_shop else []


# --- the formulas -----------------------------------------------------------------------------------------


def order_counts(window: Window, *, per_shop: bool = False) -> Select[*tuple[Any, ...]]:
    shop = _shop(Order.seller_id, per_shop)
    return select(*shop, func.count().label("orders")).where(created_in(window)).group_by(*shop)


def dispute_counts(window: Window, now: datetime, *, per_shop: bool = False) -> Select[*tuple[Any, ...]]:
    """Everything counted over the population's disputes, in one pass."""
    shop = _shop(Dispute.seller_id, per_shop)
    return (
        select(
            *shop,
            func.count().label("opened"),
            func.count(Dispute.first_resolved_at).label("resolved"),
            _count_if(FIRST_CONTACT).label("first_contact"),
            _count_if(REOPENED).label("reopened"),
            func.count(Dispute.first_escalated_at).label("escalated"),
            _count_if(sla_breached(now)).label("breached"),
            func.avg(Dispute.csat_score).label("csat_average"),
            func.count(Dispute.csat_score).label("csat_responses"),
            _count_if(Dispute.csat_score >= 4).label("csat_satisfied"),
            _count_if(Dispute.return_required.is_(True)).label("returns"),
            *(_count_if(Dispute.at_fault == fault).label(f"fault_{fault}") for fault in FAULTS),
        )
        .where(opened_in(window))
        .group_by(*shop)
    )


DURATIONS = {"first_response": FIRST_RESPONSE_SECONDS, "resolution": RESOLUTION_SECONDS}
PERCENTILES = {"p50": P50, "p90": P90}


def duration_percentiles(window: Window, *, dialect: str, per_shop: bool = False) -> Select[*tuple[Any, ...]]:
    """p50 and p90 of the first response and of the resolution: one row (per shop) with the columns
    ``first_response_p50``, ``first_response_p90``, ``resolution_p50``, ``resolution_p90``."""
    shop = _shop(Dispute.seller_id, per_shop)
    names = [(kind, name) for kind in DURATIONS for name in PERCENTILES]
    if dialect == "postgresql":  # one scan of the window's disputes, one sort per duration
        picks = [percentile_disc(PERCENTILES[name], DURATIONS[kind]).label(f"{kind}_{name}") for kind, name in names]
        return select(*shop, *picks).where(opened_in(window)).group_by(*shop)
    values = union_all(
        *(
            select(literal(kind).label("kind"), *shop, value.label("value")).where(opened_in(window))
            for kind, value in DURATIONS.items()
        )
    )
    partition = ["kind", *(["seller_id"] if per_shop else [])]
    ranked = nearest_rank(select(values.subquery()), partition=partition, fractions=PERCENTILES).subquery()
    groups = [ranked.c.seller_id] if per_shop else []
    pivot = [func.max(case((ranked.c.kind == kind, ranked.c[name]))).label(f"{kind}_{name}") for kind, name in names]
    return select(*groups, *pivot).group_by(*groups)


def refunded_in(window: Window) -> ColumnElement[bool]:
    """The compensation granted on the population's orders, not failed (a refund carries its order's date
    and shop, copied when it was written: no join with the window's orders)."""
    conditions = [Refund.order_created_at >= window.start, Refund.order_created_at < window.end]
    if window.seller_id is not None:
        conditions.append(Refund.seller_id == window.seller_id)
    return and_(*conditions, Refund.status != "failed")


def refund_breakdown(window: Window) -> Select[*tuple[Any, ...]]:
    """The compensation granted on the population's orders (pending or paid, not failed), by currency,
    kind and funder: how many and how much (the compensation, without an operator bonus)."""
    return (
        select(Refund.currency, Refund.kind, Refund.funded_by, func.count(), func.sum(Refund.amount))
        .where(refunded_in(window))
        .group_by(Refund.currency, Refund.kind, Refund.funded_by)
        .order_by(Refund.currency, Refund.kind, Refund.funded_by)
    )


def orders_refunded(window: Window, *, per_shop: bool = False) -> Select[*tuple[Any, ...]]:
    """The population's orders with at least one refund, credit or promo code (not failed)."""
    shop = _shop(Refund.seller_id, per_shop)
    return (
        select(*shop, func.count(func.distinct(Refund.order_id)).label("refunded"))
        .where(refunded_in(window))
        .group_by(*shop)
    )


def orders_defective(window: Window, *, per_shop: bool = False) -> Select[*tuple[Any, ...]]:
    """The population's orders with a dispute whose last decision put the shop at fault."""
    shop = _shop(Order.seller_id, per_shop)
    return (
        select(*shop, func.count(func.distinct(Dispute.order_id)).label("defective"))
        .join(Order, Order.id == Dispute.order_id)
        .where(Dispute.created_at >= window.start, Dispute.at_fault == "seller", created_in(window))
        .group_by(*shop)
    )


def ratio(part: int, whole: int, scale: float = 1.0) -> float | None:
    """A rate, or null when there is nothing to measure it over."""
    return None if whole == 0 else round(scale * part / whole, 6)
